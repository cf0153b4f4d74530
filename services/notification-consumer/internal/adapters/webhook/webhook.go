// Package webhook delivers notifications as signed HTTPS POSTs of JSON, with
// client timeouts and a token-bucket rate limit per host, and gives receivers
// VerifySignature.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// SecretResolver returns the signing secret a subscription's reference names.
type SecretResolver interface {
	Secret(ref string) ([]byte, error)
}

// Config configures the webhook sender.
type Config struct {
	// Timeout bounds one request, connect to end of response; default 10s.
	Timeout time.Duration
	// AllowHTTP permits http:// targets (development and tests only).
	AllowHTTP bool
	// AllowPrivateNetworks permits targets that resolve to loopback,
	// private, link-local or unspecified addresses. Off by default, so a
	// subscription cannot make the service call into its own network.
	AllowPrivateNetworks bool
	// RatePerHost is the sustained requests per second to one host; default 10.
	RatePerHost float64
	// Burst is the token bucket size per host; default 10.
	Burst int
	// MaxRetryAfter caps a receiver's Retry-After; default 1h.
	MaxRetryAfter time.Duration
	// TLS overrides the TLS client settings (for example extra roots); optional.
	TLS *tls.Config
	// UserAgent is sent with every request; default "fleet-notification-consumer".
	UserAgent string
}

// DefaultConfig returns the webhook defaults.
func DefaultConfig() Config {
	return Config{Timeout: 10 * time.Second, RatePerHost: 10, Burst: 10, MaxRetryAfter: time.Hour, UserAgent: "fleet-notification-consumer"}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.RatePerHost == 0 {
		c.RatePerHost = d.RatePerHost
	}
	if c.Burst == 0 {
		c.Burst = d.Burst
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = d.MaxRetryAfter
	}
	if c.UserAgent == "" {
		c.UserAgent = d.UserAgent
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("webhook: timeout %s <= 0", c.Timeout)
	case c.RatePerHost <= 0 || c.Burst < 1:
		return fmt.Errorf("webhook: rate %v/s burst %d must be positive", c.RatePerHost, c.Burst)
	case c.MaxRetryAfter <= 0:
		return fmt.Errorf("webhook: max retry-after %s <= 0", c.MaxRetryAfter)
	}
	return nil
}

// Sender posts signed webhooks.
type Sender struct {
	cfg     Config
	client  *http.Client
	secrets SecretResolver
	now     func() time.Time

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewSender returns a sender that resolves secrets through secrets.
func NewSender(cfg Config, secrets SecretResolver) (*Sender, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if secrets == nil {
		return nil, errors.New("webhook: a secret resolver is required")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS != nil {
		transport.TLSClientConfig = cfg.TLS.Clone()
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivateNetworks {
		dialer.Control = refusePrivate
	}
	transport.DialContext = dialer.DialContext
	transport.Proxy = nil
	transport.ResponseHeaderTimeout = cfg.Timeout
	transport.MaxIdleConnsPerHost = 8
	return &Sender{
		cfg: cfg,
		client: &http.Client{
			Timeout:   cfg.Timeout,
			Transport: transport,
			// A redirect is not followed: the signed body goes only where
			// the subscriber said.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		secrets:  secrets,
		now:      time.Now,
		limiters: make(map[string]*rate.Limiter),
	}, nil
}

// Close releases idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

func (s *Sender) limiter(host string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.limiters[host]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.RatePerHost), s.cfg.Burst)
		s.limiters[host] = l
	}
	return l
}

// Send posts d.Payload to d.Target. 2xx is success; 5xx, 429, 408 and
// network errors or timeouts are transient (honouring Retry-After); other
// statuses are permanent.
func (s *Sender) Send(ctx context.Context, d domain.Delivery) error {
	if err := domain.ValidateWebhookURL(d.Target, s.cfg.AllowHTTP); err != nil {
		return domain.Permanent(fmt.Errorf("webhook target: %w", err))
	}
	u, _ := url.Parse(d.Target)
	secret, err := s.secrets.Secret(d.SecretRef)
	if err != nil {
		return domain.Transient(fmt.Errorf("webhook secret %q: %w", d.SecretRef, err), 0)
	}
	if oc, ok := s.secrets.(ownerChecker); ok && !oc.UsableBy(d.SecretRef, d.UserID) {
		return domain.Permanent(fmt.Errorf("%w: %s", ErrSecretNotOwned, d.SecretRef))
	}
	if err := s.limiter(u.Host).Wait(ctx); err != nil {
		return domain.Transient(fmt.Errorf("webhook rate limit for %s: %w", u.Host, err), 0)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Target, bytes.NewReader(d.Payload))
	if err != nil {
		return domain.Permanent(fmt.Errorf("webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set(HeaderEventID, d.EventID)
	req.Header.Set(HeaderDelivery, d.ID)
	req.Header.Set(HeaderSignature, Sign(secret, s.now(), d.Payload))
	resp, err := s.client.Do(req)
	if errors.Is(err, ErrPrivateAddress) {
		return domain.Permanent(fmt.Errorf("webhook POST %s: %w", u.Redacted(), err))
	}
	if err != nil {
		return domain.Transient(fmt.Errorf("webhook POST %s: %w", u.Redacted(), err), 0)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	failure := fmt.Errorf("webhook POST %s: status %d: %q", u.Redacted(), resp.StatusCode, snippet)
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return domain.Transient(failure, s.retryAfter(resp.Header.Get("Retry-After")))
	default:
		return domain.Permanent(failure)
	}
}

// retryAfter parses Retry-After as seconds or an HTTP date, capped.
func (s *Sender) retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(s.now())
	}
	return min(max(d, 0), s.cfg.MaxRetryAfter)
}

// ErrPrivateAddress is the failure of a webhook whose host resolves to an
// address the sender may not call.
var ErrPrivateAddress = errors.New("webhook target resolves to a non-public address")

// refusePrivate runs after name resolution, on the address actually dialled,
// so a host name that later resolves to a private address is refused too.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, host)
	}
	if NonPublic(ip) {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, ip.Unmap())
	}
	return nil
}

// nonPublicPrefixes are the special-purpose ranges (IANA IPv4 and IPv6
// Special-Purpose Address Registries) that the standard library's
// predicates do not cover but that reach into a provider's or the host's
// own network, or embed an IPv4 address that would bypass the IPv4 checks.
var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255 broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 well-known prefix
	netip.MustParsePrefix("64:ff9b:1::/48"),  // NAT64 local-use prefix
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo (embeds an IPv4 address)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4 (embeds an IPv4 address)
}

// NonPublic reports whether a webhook may not be sent to ip: loopback,
// private, link-local, unspecified, multicast, or one of the special-purpose
// ranges above (IPv4-mapped IPv6 addresses are judged as IPv4).
func NonPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
