package webhook_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/webhook"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

var secret = []byte("s3cret-for-tests")

func secrets() webhook.Secrets {
	return webhook.Secrets{Lookup: func(k string) (string, bool) {
		if k == "WEBHOOK_SECRET_HOOK_A" {
			return string(secret), true
		}
		return "", false
	}, EnvPrefix: "WEBHOOK_SECRET_"}
}

func tlsSender(t *testing.T, srv *httptest.Server, cfg webhook.Config) *webhook.Sender {
	t.Helper()
	cfg.AllowPrivateNetworks = true
	if srv.TLS != nil {
		cfg.TLS = srv.Client().Transport.(*http.Transport).TLSClientConfig
	}
	s, err := webhook.NewSender(cfg, secrets())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func delivery(url string) domain.Delivery {
	return domain.Delivery{ID: "d-1", EventID: "e-1", Channel: domain.ChannelWebhook, Target: url,
		SecretRef: "hook-a", Payload: []byte(`{"job_id":"j-1","status":"COMPLETED"}`)}
}

func TestSendSignsBodyAndReceiverVerifies(t *testing.T) {
	t.Parallel()
	type received struct {
		body           []byte
		sig, eventID   string
		verifyErr      error
		contentTypeHdr string
	}
	got := make(chan received, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sig := r.Header.Get(webhook.HeaderSignature)
		got <- received{body: b, sig: sig, eventID: r.Header.Get(webhook.HeaderEventID),
			verifyErr: webhook.VerifySignature(secret, sig, b, 5*time.Minute), contentTypeHdr: r.Header.Get("Content-Type")}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	s := tlsSender(t, srv, webhook.Config{})
	d := delivery(srv.URL + "/hook")
	require.NoError(t, s.Send(context.Background(), d))
	r := <-got
	require.NoError(t, r.verifyErr)
	require.Equal(t, d.Payload, r.body)
	require.Equal(t, "e-1", r.eventID)
	require.Equal(t, "application/json", r.contentTypeHdr)
	require.ErrorIs(t, webhook.VerifySignature([]byte("wrong"), r.sig, r.body, time.Minute), webhook.ErrSignatureMismatch)
	require.ErrorIs(t, webhook.VerifySignature(secret, r.sig, append(r.body, ' '), time.Minute), webhook.ErrSignatureMismatch)
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	good := webhook.Sign(secret, now, body)
	tests := []struct {
		name   string
		header string
		at     time.Time
		want   error
	}{
		{name: "valid", header: good, at: now},
		{name: "valid within tolerance", header: good, at: now.Add(4 * time.Minute)},
		{name: "too old", header: good, at: now.Add(6 * time.Minute), want: webhook.ErrSignatureExpired},
		{name: "rotation: second v1 matches", header: "t=1800000000,v1=" + strings.Repeat("0", 64) + "," + good[len("t=1800000000,"):], at: now},
		{name: "empty", header: "", at: now, want: webhook.ErrMalformedSignature},
		{name: "no timestamp", header: good[len("t=1800000000,"):], at: now, want: webhook.ErrMalformedSignature},
		{name: "bad hex", header: "t=1800000000,v1=zz", at: now, want: webhook.ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := webhook.VerifySignatureAt(secret, tt.header, body, 5*time.Minute, tt.at)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSendClassifiesResponses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		retryAfter string
		permanent  bool
		wantAfter  time.Duration
	}{
		{name: "503 transient", status: 503},
		{name: "429 honours retry-after", status: 429, retryAfter: "7", wantAfter: 7 * time.Second},
		{name: "400 permanent", status: 400, permanent: true},
		{name: "410 permanent", status: 410, permanent: true},
		{name: "302 permanent, not followed", status: 302, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.status == 302 {
					w.Header().Set("Location", "https://elsewhere.example/")
				}
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			err := tlsSender(t, srv, webhook.Config{}).Send(context.Background(), delivery(srv.URL))
			require.Error(t, err)
			permanent, after := domain.Classify(err)
			require.Equal(t, tt.permanent, permanent, "%v", err)
			require.Equal(t, tt.wantAfter, after)
		})
	}
}

func TestSendTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	err := tlsSender(t, srv, webhook.Config{Timeout: 200 * time.Millisecond}).Send(context.Background(), delivery(srv.URL))
	require.Error(t, err)
	permanent, _ := domain.Classify(err)
	require.False(t, permanent)
}

func TestSendRefusesPlainHTTPUnlessAllowed(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	err := tlsSender(t, srv, webhook.Config{}).Send(context.Background(), delivery(srv.URL))
	permanent, _ := domain.Classify(err)
	require.True(t, permanent)
	require.Zero(t, hits.Load())
	require.NoError(t, tlsSender(t, srv, webhook.Config{AllowHTTP: true}).Send(context.Background(), delivery(srv.URL)))
	require.EqualValues(t, 1, hits.Load())
}

func TestRateLimitPerHost(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	s := tlsSender(t, srv, webhook.Config{RatePerHost: 0.001, Burst: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for range 2 {
		require.NoError(t, s.Send(ctx, delivery(srv.URL)))
	}
	// The bucket is empty: the third request would wait far beyond ctx.
	err := s.Send(ctx, delivery(srv.URL))
	require.Error(t, err)
	require.EqualValues(t, 2, hits.Load())
}

func TestUnknownSecretIsTransient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	d := delivery(srv.URL)
	d.SecretRef = "missing"
	err := tlsSender(t, srv, webhook.Config{}).Send(context.Background(), d)
	require.ErrorIs(t, err, webhook.ErrUnknownSecret)
}

func TestPrivateTargetsAreRefusedByDefault(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	s, err := webhook.NewSender(webhook.Config{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig}, secrets())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	err = s.Send(context.Background(), delivery(srv.URL))
	require.ErrorIs(t, err, webhook.ErrPrivateAddress)
	permanent, _ := domain.Classify(err)
	require.True(t, permanent)
	require.Zero(t, hits.Load())
}

func TestNonPublicAddresses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		addr   string
		public bool
	}{
		{name: "loopback v4", addr: "127.0.0.1"},
		{name: "loopback v6", addr: "::1"},
		{name: "private 10/8", addr: "10.1.2.3"},
		{name: "private 172.16/12", addr: "172.20.0.1"},
		{name: "private 192.168/16", addr: "192.168.1.1"},
		{name: "link-local metadata", addr: "169.254.169.254"},
		{name: "unspecified", addr: "0.0.0.0"},
		{name: "this network 0/8", addr: "0.1.2.3"},
		{name: "shared address space 100.64/10 low", addr: "100.64.0.1"},
		{name: "shared address space 100.64/10 high", addr: "100.127.255.254"},
		{name: "IETF protocol assignments 192.0.0/24", addr: "192.0.0.170"},
		{name: "benchmarking 198.18/15 low", addr: "198.18.0.1"},
		{name: "benchmarking 198.18/15 high", addr: "198.19.255.254"},
		{name: "reserved 240/4", addr: "240.0.0.1"},
		{name: "broadcast", addr: "255.255.255.255"},
		{name: "NAT64 64:ff9b::/96 of a private v4", addr: "64:ff9b::a00:1"},
		{name: "NAT64 64:ff9b::/96 of a public v4", addr: "64:ff9b::808:808"},
		{name: "6to4 2002::/16", addr: "2002:a00:1::1"},
		{name: "Teredo 2001::/32", addr: "2001:0:4136:e378::1"},
		{name: "unique local fc00::/7", addr: "fd00::1"},
		{name: "IPv4-mapped private", addr: "::ffff:10.0.0.1"},
		{name: "IPv4-mapped shared address space", addr: "::ffff:100.64.0.1"},
		{name: "public v4", addr: "8.8.8.8", public: true},
		{name: "public v4 next to 100.64/10", addr: "100.128.0.1", public: true},
		{name: "public v4 next to 198.18/15", addr: "198.20.0.1", public: true},
		{name: "public v4 next to 192.0.0/24", addr: "192.0.1.1", public: true},
		{name: "public v6", addr: "2606:4700:4700::1111", public: true},
		{name: "public v6 next to NAT64", addr: "64:ff9b:2::1", public: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, !tt.public, webhook.NonPublic(netip.MustParseAddr(tt.addr)), tt.addr)
		})
	}
}

// TestDialRefusesSpecialPurposeRanges sends to literal addresses of the
// special-purpose ranges: the dialler refuses each before connecting.
func TestDialRefusesSpecialPurposeRanges(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"100.64.0.1", "198.18.0.1", "192.0.0.8", "[64:ff9b::a00:1]", "[2002:a00:1::1]"} {
		s, err := webhook.NewSender(webhook.Config{Timeout: 2 * time.Second}, secrets())
		require.NoError(t, err)
		err = s.Send(context.Background(), delivery("https://"+host+"/hook"))
		s.Close()
		require.ErrorIs(t, err, webhook.ErrPrivateAddress, host)
	}
}

func TestSecretsUsableByOwnersOnly(t *testing.T) {
	t.Parallel()
	s := secrets()
	require.True(t, s.UsableBy("hook-a", "anyone"), "without owners every user may name a secret")
	require.False(t, s.UsableBy("missing", "anyone"))
	s.Owners = map[string][]string{"hook-a": {"ada", "ops"}}
	require.True(t, s.UsableBy("hook-a", "ada"))
	require.True(t, s.UsableBy("hook-a", "ops"))
	require.False(t, s.UsableBy("hook-a", "bob"))
	require.False(t, s.UsableBy("missing", "ada"))
}

// TestSendRefusesAnotherUsersSecret: a delivery whose user does not own
// the secret (owners changed after the subscription was made) is a
// permanent failure, and nothing is sent or signed.
func TestSendRefusesAnotherUsersSecret(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	sec := secrets()
	sec.Owners = map[string][]string{"hook-a": {"ada"}}
	s, err := webhook.NewSender(webhook.Config{AllowPrivateNetworks: true, TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig}, sec)
	require.NoError(t, err)
	t.Cleanup(s.Close)

	d := delivery(srv.URL)
	d.UserID = "bob"
	err = s.Send(context.Background(), d)
	require.ErrorIs(t, err, webhook.ErrSecretNotOwned)
	permanent, _ := domain.Classify(err)
	require.True(t, permanent)
	require.Zero(t, hits.Load())

	d.UserID = "ada"
	require.NoError(t, s.Send(context.Background(), d))
	require.EqualValues(t, 1, hits.Load())
}
