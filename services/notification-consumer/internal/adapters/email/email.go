// Package email delivers notifications over SMTP: optional STARTTLS and AUTH
// PLAIN, timeouts, a stable Message-ID per (event, channel, target), and
// failures classified as transient (4xx, timeouts, connection errors) or
// permanent (5xx).
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// TLSMode says how STARTTLS is used.
type TLSMode string

// STARTTLS modes.
const (
	// TLSRequired fails the delivery when the server does not offer STARTTLS.
	TLSRequired TLSMode = "required"
	// TLSOpportunistic upgrades when the server offers STARTTLS.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSOff never upgrades.
	TLSOff TLSMode = "off"
)

// Config configures the SMTP sender.
type Config struct {
	// Addr is the SMTP server, host:port.
	Addr string
	// From is the envelope sender and From header, a bare address.
	From string
	// HeloName is the name sent in EHLO; default "localhost".
	HeloName string
	// StartTLS is required, opportunistic (default) or off.
	StartTLS TLSMode
	// TLS overrides the TLS client settings (server name, roots); optional.
	TLS *tls.Config
	// Username and Password enable AUTH PLAIN when Username is set. net/smtp
	// refuses to send them unencrypted except to localhost.
	Username string
	Password string
	// DialTimeout bounds the TCP connect; default 5s.
	DialTimeout time.Duration
	// SendTimeout bounds the whole SMTP conversation; default 30s.
	SendTimeout time.Duration
	// MessageIDDomain is the right-hand side of Message-IDs; default "fleet.notifications".
	MessageIDDomain string
}

// DefaultConfig returns the defaults for an SMTP server at addr.
func DefaultConfig(addr, from string) Config {
	return Config{
		Addr: addr, From: from, HeloName: "localhost", StartTLS: TLSOpportunistic,
		DialTimeout: 5 * time.Second, SendTimeout: 30 * time.Second, MessageIDDomain: "fleet.notifications",
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Addr, c.From)
	if c.HeloName == "" {
		c.HeloName = d.HeloName
	}
	if c.StartTLS == "" {
		c.StartTLS = d.StartTLS
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = d.SendTimeout
	}
	if c.MessageIDDomain == "" {
		c.MessageIDDomain = d.MessageIDDomain
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("smtp: address %q: %w", c.Addr, err)
	}
	if err := domain.ValidateEmailAddress(c.From); err != nil {
		return fmt.Errorf("smtp: from: %w", err)
	}
	switch c.StartTLS {
	case TLSRequired, TLSOpportunistic, TLSOff:
	default:
		return fmt.Errorf("smtp: starttls mode %q is not required, opportunistic or off", c.StartTLS)
	}
	switch {
	case c.DialTimeout <= 0 || c.SendTimeout <= 0:
		return errors.New("smtp: timeouts must be positive")
	case strings.ContainsAny(c.HeloName+c.MessageIDDomain, "\r\n <>"):
		return errors.New("smtp: helo name and message id domain must be plain host names")
	case c.Username == "" && c.Password != "":
		return errors.New("smtp: password without username")
	}
	return nil
}

// Sender sends notification emails.
type Sender struct {
	cfg Config
	now func() time.Time
}

// NewSender validates cfg and returns a sender.
func NewSender(cfg Config) (*Sender, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sender{cfg: cfg, now: time.Now}, nil
}

// MessageID returns the Message-ID the sender puts on the email of d.
func (s *Sender) MessageID(d domain.Delivery) string {
	return domain.MessageID(d.EventID, d.Channel, d.Target, s.cfg.MessageIDDomain)
}

// Send delivers d.Subject and d.Body to d.Target. Errors are classified
// with domain.Transient / domain.Permanent.
func (s *Sender) Send(ctx context.Context, d domain.Delivery) error {
	if err := domain.ValidateEmailAddress(d.Target); err != nil {
		return domain.Permanent(fmt.Errorf("recipient: %w", err))
	}
	if err := domain.ValidateHeaderText(d.Subject); err != nil {
		return domain.Permanent(fmt.Errorf("subject: %w", err))
	}
	msg := s.compose(d)
	if err := s.transact(ctx, d.Target, msg); err != nil {
		return classify(err)
	}
	return nil
}

// compose builds the RFC 5322 message with CRLF line endings.
func (s *Sender) compose(d domain.Delivery) []byte {
	var b strings.Builder
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", s.cfg.From)
	header("To", d.Target)
	header("Subject", mime.QEncoding.Encode("utf-8", d.Subject))
	header("Date", s.now().UTC().Format(time.RFC1123Z))
	header("Message-ID", s.MessageID(d))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	header("X-Fleet-Event-Id", sanitizeHeader(d.EventID))
	header("X-Fleet-Delivery-Id", sanitizeHeader(d.ID))
	b.WriteString("\r\n")
	body := strings.ReplaceAll(strings.ReplaceAll(d.Body, "\r\n", "\n"), "\r", "\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	if !strings.HasSuffix(body, "\n") {
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func (s *Sender) transact(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	dialer := net.Dialer{Timeout: s.cfg.DialTimeout}
	conn, err := dialer.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.cfg.Addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.HeloName); err != nil {
		return fmt.Errorf("smtp ehlo: %w", err)
	}
	if s.cfg.StartTLS != TLSOff {
		if ok, _ := c.Extension("STARTTLS"); ok {
			tlsCfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
			if s.cfg.TLS != nil {
				tlsCfg = s.cfg.TLS.Clone()
			}
			if err := c.StartTLS(tlsCfg); err != nil {
				return fmt.Errorf("smtp starttls: %w", err)
			}
		} else if s.cfg.StartTLS == TLSRequired {
			return errors.New("smtp: server does not offer STARTTLS, which is required")
		}
	}
	if s.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, host)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(s.cfg.From); err != nil {
		return fmt.Errorf("smtp mail from: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp data write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp data end: %w", err)
	}
	if err := c.Quit(); err != nil {
		// The message was accepted at the end of DATA; a failed QUIT does
		// not undo that.
		return nil
	}
	return nil
}

// classify maps SMTP reply codes: 4xx transient, 5xx permanent; everything
// else (network errors, timeouts, TLS) is transient.
func classify(err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		if tp.Code >= 500 && tp.Code < 600 {
			return domain.Permanent(err)
		}
		return domain.Transient(err, 0)
	}
	return domain.Transient(err, 0)
}
