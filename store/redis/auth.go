package redis

// Credentials asked for on every connection, so that rotated secrets apply
// without a restart.

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// errCredentials wraps the error of Options.Credentials.
var errCredentials = errors.New("redis: no credentials")

// authLogEvery paces the warning about refused credentials.
const authLogEvery = 10 * time.Second

// authFn adapts Options.Credentials to rueidis, which calls it on every
// connection attempt.
func authFn(creds func() (string, string, error)) func(rueidis.AuthCredentialsContext) (rueidis.AuthCredentials, error) {
	return func(rueidis.AuthCredentialsContext) (rueidis.AuthCredentials, error) {
		user, password, err := creds()
		if err != nil {
			return rueidis.AuthCredentials{}, fmt.Errorf("%w: %w", errCredentials, err)
		}
		return rueidis.AuthCredentials{Username: user, Password: password}, nil
	}
}

// authFailed reports whether err says that the server refused the
// credentials (WRONGPASS, NOAUTH) or that there were none to give.
func authFailed(err error) bool {
	if errors.Is(err, errCredentials) {
		return true
	}
	var rerr *rueidis.RedisError
	if !errors.As(err, &rerr) || rerr == nil || rerr.IsNil() {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH")
}

// authLog warns, at most once per authLogEvery, that the credentials were
// refused. The message names the cause; it never carries a secret (the
// server's and Options.Credentials' errors do not either).
type authLog struct{ last atomic.Int64 } // Unix ns of the last warning

func (l *authLog) note(s *Store, err error, now time.Time) {
	if !authFailed(err) {
		return
	}
	last := l.last.Load()
	if now.UnixNano()-last < int64(authLogEvery) || !l.last.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	s.log.Error("redis: authentication failed: check the username and password (or password file)", "error_kind", "auth", "err", err)
}
