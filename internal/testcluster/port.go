package testcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Ports are picked at random from [portMin, portMax), so that test binaries
// running at the same time rarely try the same one. With the bus port at
// port+busPortOffset both stay below 32768, where Linux starts handing out
// ephemeral ports (ip_local_port_range 32768-60999): the nodes' own outgoing
// connections can then never occupy a port another cluster is about to bind.
const (
	portMin       = 12000
	portMax       = 22000
	busPortOffset = 10000
	maxAttempts   = 5 // port races survived per Start
)

// freePort picks a random port that is bindable on every host, together with
// port+busPortOffset when bus is set. Another process may still take it before
// redis-server binds it; Start then retries.
func freePort(hosts []string, bus bool) (int, error) {
	for range 200 {
		p := portMin + rand.IntN(portMax-portMin)
		if bindable(hosts, p) && (!bus || bindable(hosts, p+busPortOffset)) {
			return p, nil
		}
	}
	return 0, errors.New("testcluster: found no free port")
}

func bindable(hosts []string, port int) bool {
	for _, h := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// checkHosts rejects anything but distinct loopback IP addresses: the package
// must never bind or dial beyond this machine, and host names could resolve
// anywhere.
func checkHosts(hosts []string) error {
	seen := map[string]bool{}
	for _, h := range hosts {
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("testcluster: host %q is not a loopback IP address", h)
		}
		if seen[ip.String()] {
			return fmt.Errorf("testcluster: host %q listed twice; each node needs its own address", h)
		}
		seen[ip.String()] = true
	}
	return nil
}
