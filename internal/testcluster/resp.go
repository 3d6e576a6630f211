package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// This file is a minimal RESP2 client. The package needs only a handful of
// commands to set up and watch a cluster, and using the product's Redis client
// library here would make the harness depend on the code it tests.

// ReplyError is an error reply from Redis, such as "MOVED 3999 127.0.0.12:15000"
// or "CLUSTERDOWN The cluster is down". Do returns it as its error; inside an
// array reply (EXEC) it appears as an element. Test for it with errors.As.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Limits that keep a corrupt or hostile reply from exhausting memory or stack.
const (
	maxBulkLen = 512 << 20 // Redis' own proto-max-bulk-len default
	maxArrLen  = 1 << 20
	maxDepth   = 8
)

// conn is one connection to one node. Its deadline follows the context it was
// dialled with, so no call can block past that context.
type conn struct {
	nc   net.Conn
	r    *bufio.Reader
	stop func() bool
}

// pastDeadline unblocks pending I/O at once when a context is cancelled.
var pastDeadline = time.Unix(1, 0)

func dial(ctx context.Context, addr string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(dl); err != nil {
			nc.Close()
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(pastDeadline) })
	return &conn{nc: nc, r: bufio.NewReader(nc), stop: stop}, nil
}

func (c *conn) close() error {
	c.stop()
	return c.nc.Close()
}

// do sends one command and reads its reply. An error reply comes back as a
// ReplyError error; I/O and protocol errors leave the connection unusable.
func (c *conn) do(args ...string) (any, error) {
	if _, err := c.nc.Write(appendCommand(nil, args)); err != nil {
		return nil, err
	}
	v, err := readReply(c.r, 0)
	if err != nil {
		return nil, err
	}
	if e, ok := v.(ReplyError); ok {
		return nil, e
	}
	return v, nil
}

// text runs a command whose reply is a simple or bulk string.
func (c *conn) text(args ...string) (string, error) {
	v, err := c.do(args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: reply is %T, want string", args[0], v)
	}
	return s, nil
}

// appendCommand encodes args as a RESP array of bulk strings.
func appendCommand(b []byte, args []string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readReply reads one RESP2 reply: simple string and bulk string as string,
// null bulk and null array as nil, integer as int64, array as []any and an
// error reply as a ReplyError value.
func readReply(r *bufio.Reader, depth int) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("resp: malformed line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return ReplyError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("resp: bad integer %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		switch {
		case err != nil || n < -1 || n > maxBulkLen:
			return nil, fmt.Errorf("resp: bad bulk length %q", body)
		case n == -1:
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if string(buf[n:]) != "\r\n" {
			return nil, errors.New("resp: bulk string not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		switch {
		case err != nil || n < -1 || n > maxArrLen:
			return nil, fmt.Errorf("resp: bad array length %q", body)
		case n == -1:
			return nil, nil
		case depth >= maxDepth:
			return nil, errors.New("resp: arrays nested too deep")
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = readReply(r, depth+1); err != nil {
				return nil, err
			}
		}
		return arr, nil
	}
	return nil, fmt.Errorf("resp: unsupported reply type %q", kind)
}

// commandArgs converts Do's arguments to the strings sent on the wire. It
// accepts only types with one obvious encoding, so a mistaken argument fails
// loudly instead of sending fmt's rendering of it.
func commandArgs(args []any) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("testcluster: no command")
	}
	out := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = v
		case []byte:
			out[i] = string(v)
		case int:
			out[i] = strconv.Itoa(v)
		case int64:
			out[i] = strconv.FormatInt(v, 10)
		case uint64:
			out[i] = strconv.FormatUint(v, 10)
		case float64:
			out[i] = strconv.FormatFloat(v, 'g', -1, 64)
		default:
			return nil, fmt.Errorf("testcluster: argument %d has unsupported type %T", i, a)
		}
	}
	return out, nil
}
