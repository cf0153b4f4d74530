// Package testutil holds test helpers shared by the notification-consumer's
// packages: a client of mailpit's HTTP API and broker addresses.
package testutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// Environment variables of the local stack.
const (
	EnvSMTPAddr   = "SMTP_ADDR"
	EnvMailpitURL = "MAILPIT_URL"
)

// Mailpit reads the mail a mailpit server received.
type Mailpit struct {
	SMTPAddr string
	BaseURL  string
	client   *http.Client
}

// NewMailpit returns the stack's mailpit, or marks the test unavailable.
func NewMailpit(t testing.TB) *Mailpit {
	t.Helper()
	smtpAddr, base := os.Getenv(EnvSMTPAddr), os.Getenv(EnvMailpitURL)
	if smtpAddr == "" || base == "" {
		testinfra.Unavailable(t, EnvSMTPAddr+"/"+EnvMailpitURL)
	}
	return &Mailpit{SMTPAddr: smtpAddr, BaseURL: base, client: &http.Client{Timeout: 10 * time.Second}}
}

// Summary is one message in a mailpit listing.
type Summary struct {
	ID        string    `json:"ID"`
	MessageID string    `json:"MessageID"`
	Subject   string    `json:"Subject"`
	Created   time.Time `json:"Created"`
	To        []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

// Message is one full message.
type Message struct {
	ID        string `json:"ID"`
	MessageID string `json:"MessageID"`
	Subject   string `json:"Subject"`
	Text      string `json:"Text"`
}

// To lists the messages sent to addr (up to 1000).
func (m *Mailpit) To(t testing.TB, addr string) []Summary {
	t.Helper()
	var out struct {
		Messages []Summary `json:"messages"`
	}
	m.get(t, "/api/v1/search?limit=1000&query="+url.QueryEscape("to:"+addr), &out)
	return out.Messages
}

// Get returns the message with mailpit id id.
func (m *Mailpit) Get(t testing.TB, id string) Message {
	t.Helper()
	var out Message
	m.get(t, "/api/v1/message/"+url.PathEscape(id), &out)
	return out
}

func (m *Mailpit) get(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := m.client.Get(m.BaseURL + path)
	if err != nil {
		t.Fatalf("mailpit GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mailpit GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("mailpit GET %s: decode: %v", path, err)
	}
}

// UniqueAddress returns a fresh recipient address for one test.
func UniqueAddress(prefix string) string {
	return fmt.Sprintf("%s-%d@example.org", prefix, time.Now().UnixNano())
}
