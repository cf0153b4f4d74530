package domain

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Limits of subscription input.
const (
	MaxTargetLen     = 2048
	MaxEventTypes    = 16
	MaxJobIDLen      = 128
	maxSecretRefLen  = 128
	maxEmailAddrSize = 254
)

var secretRefPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ValidationRules are the deployment's choices that validation depends on.
type ValidationRules struct {
	// AllowHTTPWebhooks accepts http:// webhook URLs (development and tests).
	AllowHTTPWebhooks bool
	// SecretUsable reports whether user may sign with a webhook secret
	// reference (it resolves and belongs to user); nil skips the check.
	SecretUsable func(ref, user string) bool
}

// errSecretRef is the one answer for a secret reference the caller may not
// use, whether it names another user's secret or none: the answer does not
// tell which names exist.
const errSecretRef = "not a webhook secret you may use"

// NormalizeSubscription validates the user-supplied fields of s and returns it
// with its event types expanded (EventTypeTerminal), deduplicated and sorted,
// and its target trimmed. Every problem is reported as a field violation.
func NormalizeSubscription(s Subscription, rules ValidationRules) (Subscription, error) {
	var v ValidationError
	if len(s.JobID) > MaxJobIDLen {
		v.Add("job_id", "longer than %d characters", MaxJobIDLen)
	} else if strings.ContainsAny(s.JobID, "\r\n\x00") {
		v.Add("job_id", "contains control characters")
	}
	s.Target = strings.TrimSpace(s.Target)
	if len(s.Target) > MaxTargetLen {
		v.Add("target", "longer than %d characters", MaxTargetLen)
	}
	switch s.Channel {
	case ChannelEmail:
		if err := ValidateEmailAddress(s.Target); err != nil {
			v.Add("target", "%v", err)
		}
		if s.SecretRef != "" {
			v.Add("webhook_secret_ref", "only webhook subscriptions take a secret")
		}
	case ChannelWebhook:
		if err := ValidateWebhookURL(s.Target, rules.AllowHTTPWebhooks); err != nil {
			v.Add("target", "%v", err)
		}
		switch {
		case s.SecretRef == "":
			v.Add("webhook_secret_ref", "required for webhook subscriptions")
		case !secretRefPattern.MatchString(s.SecretRef):
			v.Add("webhook_secret_ref", "must be 1-%d characters of letters, digits, '_', '.', '-'", maxSecretRefLen)
		case rules.SecretUsable != nil && !rules.SecretUsable(s.SecretRef, s.UserID):
			v.Add("webhook_secret_ref", errSecretRef)
		}
	case ChannelInApp:
		if s.Target != "" {
			v.Add("target", "must be empty for in-app subscriptions")
		}
		if s.SecretRef != "" {
			v.Add("webhook_secret_ref", "only webhook subscriptions take a secret")
		}
	default:
		v.Add("channel", "must be EMAIL, WEBHOOK or IN_APP")
	}
	types, ok := normalizeEventTypes(s.EventTypes, &v)
	if ok {
		s.EventTypes = types
	}
	if err := v.Err(); err != nil {
		return Subscription{}, err
	}
	return s, nil
}

func normalizeEventTypes(in []string, v *ValidationError) ([]string, bool) {
	if len(in) == 0 {
		v.Add("event_types", "at least one event type is required, e.g. %q or %q", events0(), EventTypeTerminal)
		return nil, false
	}
	if len(in) > MaxEventTypes {
		v.Add("event_types", "at most %d event types", MaxEventTypes)
		return nil, false
	}
	ok := true
	var out []string
	for i, t := range in {
		switch {
		case t == EventTypeTerminal:
			out = append(out, TerminalEventTypes...)
		case slices.Contains(LifecycleEventTypes, t):
			out = append(out, t)
		default:
			v.Add("event_types["+strconv.Itoa(i)+"]", "unknown event type %q; known: %s, %s", truncate(t, 64), strings.Join(LifecycleEventTypes, ", "), EventTypeTerminal)
			ok = false
		}
	}
	slices.Sort(out)
	return slices.Compact(out), ok
}

func events0() string { return LifecycleEventTypes[3] }

// ValidateEmailAddress accepts a bare RFC 5322 addr-spec (no display name,
// no CR/LF) such as "ada@example.org".
func ValidateEmailAddress(addr string) error {
	switch {
	case addr == "":
		return errorf("an email address is required")
	case len(addr) > maxEmailAddrSize:
		return errorf("email address longer than %d characters", maxEmailAddrSize)
	case strings.ContainsAny(addr, "\r\n\x00<>, "):
		return errorf("%q is not a bare email address", truncate(addr, 64))
	}
	parsed, err := mail.ParseAddress(addr)
	if err != nil || parsed.Address != addr || parsed.Name != "" {
		return errorf("%q is not a valid email address", truncate(addr, 64))
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 1 || !strings.Contains(addr[at+1:], ".") && addr[at+1:] != "localhost" {
		return errorf("%q has no valid domain", truncate(addr, 64))
	}
	return nil
}

// ValidateWebhookURL accepts an absolute https URL with a host, no user
// info and no fragment; http too when allowHTTP.
func ValidateWebhookURL(raw string, allowHTTP bool) error {
	if raw == "" {
		return errorf("a webhook URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errorf("not a URL: %v", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	case u.Scheme == "http":
		return errorf("webhook URL must use https")
	default:
		return errorf("webhook URL scheme %q is not https", truncate(u.Scheme, 16))
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		return errorf("webhook URL has no host")
	case u.User != nil:
		return errorf("webhook URL must not carry credentials")
	case u.Fragment != "":
		return errorf("webhook URL must not have a fragment")
	}
	return nil
}

// ValidateHeaderText rejects text that would break out of a mail header.
func ValidateHeaderText(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return errorf("contains CR, LF or NUL")
	}
	return nil
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
