package testutil

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// SMTPProxy relays SMTP between a client and an upstream server, and can
// hold back the end-of-data line of every message from the nth on. A client
// killed while its message is held leaves the upstream server without that
// message: the client dies in the middle of a delivery, before the server
// accepted it.
type SMTPProxy struct {
	Addr     string
	upstream string
	holdFrom int64
	messages atomic.Int64
	holding  chan struct{}
	release  chan struct{}
	once     sync.Once
}

// NewSMTPProxy relays to upstream and holds the end of the holdFrom-th and
// later messages until Release; holdFrom 0 holds nothing.
func NewSMTPProxy(t testing.TB, upstream string, holdFrom int64) *SMTPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &SMTPProxy{Addr: ln.Addr().String(), upstream: upstream, holdFrom: holdFrom,
		holding: make(chan struct{}), release: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); p.Release(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.relay(c) })
		}
	})
	return p
}

// Holding is closed once a message is being held.
func (p *SMTPProxy) Holding() <-chan struct{} { return p.holding }

// Release lets held and later messages through.
func (p *SMTPProxy) Release() {
	p.once.Do(func() { close(p.release) })
}

func (p *SMTPProxy) relay(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		_, _ = io.Copy(client, server)
		_ = client.Close()
	}()
	r := bufio.NewReader(client)
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // the client went away: an unfinished message is dropped upstream
		}
		switch {
		case !inData && (line == "DATA\r\n" || line == "data\r\n"):
			inData = true
		case inData && line == ".\r\n":
			inData = false
			if n := p.messages.Add(1); p.holdFrom > 0 && n >= p.holdFrom {
				select {
				case <-p.holding:
				default:
					if n == p.holdFrom {
						close(p.holding)
					}
				}
				if !p.wait(client, r) {
					return
				}
			}
		}
		if _, err := server.Write([]byte(line)); err != nil {
			return
		}
	}
}

// wait blocks until Release (true) or until the client disconnects (false).
func (p *SMTPProxy) wait(client net.Conn, r *bufio.Reader) bool {
	defer func() { _ = client.SetReadDeadline(time.Time{}) }()
	for {
		select {
		case <-p.release:
			return true
		default:
		}
		_ = client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := r.Peek(1)
		var ne net.Error
		switch {
		case err == nil:
			return true
		case errors.As(err, &ne) && ne.Timeout():
			continue
		default:
			return false
		}
	}
}
