package email_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/email"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/testutil"
)

func delivery(to string) domain.Delivery {
	return domain.Delivery{
		ID: "d-1", EventID: "0190c1c2-0000-7000-8000-000000000001", Channel: domain.ChannelEmail,
		Target: to, Subject: "[Fleet] Job calib-7 completed – ok", Body: "line one\nline two\n.\nend",
	}
}

func TestSendDeliversThroughMailpit(t *testing.T) {
	t.Parallel()
	mp := testutil.NewMailpit(t)
	s, err := email.NewSender(email.Config{Addr: mp.SMTPAddr, From: "fleet@example.org", StartTLS: email.TLSOpportunistic})
	require.NoError(t, err)
	to := testutil.UniqueAddress("email-send")
	d := delivery(to)
	require.NoError(t, s.Send(context.Background(), d))

	var got []testutil.Summary
	require.Eventually(t, func() bool { got = mp.To(t, to); return len(got) == 1 }, 5*time.Second, 50*time.Millisecond)
	msg := mp.Get(t, got[0].ID)
	require.Equal(t, d.Subject, msg.Subject)
	require.Equal(t, strings.Trim(s.MessageID(d), "<>"), msg.MessageID)
	require.Contains(t, msg.Text, "line two\r\n.\r\nend")
}

func TestMessageIDIsStable(t *testing.T) {
	t.Parallel()
	s, err := email.NewSender(email.Config{Addr: "127.0.0.1:1", From: "fleet@example.org"})
	require.NoError(t, err)
	a, b := delivery("a@example.org"), delivery("a@example.org")
	b.ID = "another-delivery-row"
	require.Equal(t, s.MessageID(a), s.MessageID(b))
	require.NotEqual(t, s.MessageID(a), s.MessageID(delivery("b@example.org")))
}

// fakeSMTP answers every command after the greeting with reply to RCPT.
func fakeSMTP(t *testing.T, rcptReply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprint(c, "220 fake ESMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"):
						fmt.Fprint(c, "250 fake\r\n")
					case strings.HasPrefix(cmd, "RCPT"):
						fmt.Fprint(c, rcptReply+"\r\n")
					case strings.HasPrefix(cmd, "QUIT"):
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSendClassifiesFailures(t *testing.T) {
	t.Parallel()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := closed.Addr().String()
	require.NoError(t, closed.Close())

	tests := []struct {
		name      string
		addr      string
		cfg       func(*email.Config)
		to        string
		permanent bool
	}{
		{name: "mailbox busy 450 is transient", addr: fakeSMTP(t, "450 4.2.1 mailbox busy"), to: "x@example.org"},
		{name: "no such user 550 is permanent", addr: fakeSMTP(t, "550 5.1.1 no such user"), to: "x@example.org", permanent: true},
		{name: "connection refused is transient", addr: refused, to: "x@example.org"},
		{name: "starttls required but not offered is transient", addr: fakeSMTP(t, "250 ok"), to: "x@example.org",
			cfg: func(c *email.Config) { c.StartTLS = email.TLSRequired }},
		{name: "header injection in recipient is permanent", addr: fakeSMTP(t, "250 ok"), to: "x@example.org\r\nBcc: y@example.org", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := email.Config{Addr: tt.addr, From: "fleet@example.org", StartTLS: email.TLSOff, SendTimeout: 5 * time.Second}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s, err := email.NewSender(cfg)
			require.NoError(t, err)
			err = s.Send(context.Background(), delivery(tt.to))
			require.Error(t, err)
			permanent, _ := domain.Classify(err)
			require.Equal(t, tt.permanent, permanent, "error: %v", err)
		})
	}
}

func TestSendRejectsSubjectWithNewline(t *testing.T) {
	t.Parallel()
	s, err := email.NewSender(email.Config{Addr: fakeSMTP(t, "250 ok"), From: "fleet@example.org", StartTLS: email.TLSOff})
	require.NoError(t, err)
	d := delivery("x@example.org")
	d.Subject = "hello\r\nBcc: victim@example.org"
	err = s.Send(context.Background(), d)
	permanent, _ := domain.Classify(err)
	require.True(t, permanent)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  email.Config
	}{
		{name: "bad address", cfg: email.Config{Addr: "nohostport", From: "a@example.org"}},
		{name: "bad from", cfg: email.Config{Addr: "h:25", From: "not an address"}},
		{name: "bad tls mode", cfg: email.Config{Addr: "h:25", From: "a@example.org", StartTLS: "sometimes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := email.NewSender(tt.cfg)
			require.Error(t, err)
		})
	}
}
