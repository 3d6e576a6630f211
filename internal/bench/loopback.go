package bench

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrRemote is wrapped by the errors of CheckLoopback and friends: a
// benchmark is load, so by default it may only go to this machine, where it
// cannot take down a shared or production deployment by mistake.
var ErrRemote = errors.New("not a loopback address (127.0.0.0/8, ::1, localhost); a benchmark is load: pass --allow-remote to load a remote deployment on purpose")

// IsLoopback reports whether host (a name or an IP address, without port
// or brackets) is "localhost" or a loopback IP address. Other names are not
// resolved: what they resolve to can change between the check and the
// dial.
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	host, _, _ = strings.Cut(host, "%") // IPv6 zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckLoopbackAddr checks that addr, HOST:PORT, is on loopback.
func CheckLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if !IsLoopback(host) {
		return fmt.Errorf("%s: %w", addr, ErrRemote)
	}
	return nil
}

// CheckLoopbackURL checks that the host of rawURL is on loopback.
func CheckLoopbackURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%q: %w", rawURL, err)
	}
	if u.Host == "" || !IsLoopback(u.Hostname()) {
		return fmt.Errorf("%s: %w", rawURL, ErrRemote)
	}
	return nil
}
