package domain_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

func TestNormalizeSubscription(t *testing.T) {
	t.Parallel()
	secretOK := func(ref, _ string) bool { return ref == "hook" }
	tests := []struct {
		name       string
		in         domain.Subscription
		rules      domain.ValidationRules
		wantFields []string
		wantTypes  []string
	}{
		{name: "email terminal shorthand expands", in: domain.Subscription{Channel: domain.ChannelEmail, Target: " ada@example.org ",
			EventTypes: []string{"job.terminal", "job.running", "job.failed"}},
			wantTypes: []string{"job.cancelled", "job.completed", "job.failed", "job.running"}},
		{name: "email with display name", in: domain.Subscription{Channel: domain.ChannelEmail, Target: "Ada <ada@example.org>",
			EventTypes: []string{"job.failed"}}, wantFields: []string{"target"}},
		{name: "email without domain dot", in: domain.Subscription{Channel: domain.ChannelEmail, Target: "ada@example",
			EventTypes: []string{"job.failed"}}, wantFields: []string{"target"}},
		{name: "webhook https with secret", in: domain.Subscription{Channel: domain.ChannelWebhook, Target: "https://h.example.org/x",
			EventTypes: []string{"job.failed"}, SecretRef: "hook"}, rules: domain.ValidationRules{SecretUsable: secretOK}, wantTypes: []string{"job.failed"}},
		{name: "webhook http refused", in: domain.Subscription{Channel: domain.ChannelWebhook, Target: "http://h.example.org/x",
			EventTypes: []string{"job.failed"}, SecretRef: "hook"}, wantFields: []string{"target"}},
		{name: "webhook http allowed in dev", in: domain.Subscription{Channel: domain.ChannelWebhook, Target: "http://127.0.0.1:9/x",
			EventTypes: []string{"job.failed"}, SecretRef: "hook"}, rules: domain.ValidationRules{AllowHTTPWebhooks: true}, wantTypes: []string{"job.failed"}},
		{name: "webhook with credentials and bad ref", in: domain.Subscription{Channel: domain.ChannelWebhook, Target: "https://u:p@h.example.org/",
			EventTypes: []string{"job.failed"}, SecretRef: "../etc/passwd"}, wantFields: []string{"target", "webhook_secret_ref"}},
		{name: "in-app with a target", in: domain.Subscription{Channel: domain.ChannelInApp, Target: "x", EventTypes: []string{"job.failed"}},
			wantFields: []string{"target"}},
		{name: "unknown and missing", in: domain.Subscription{Channel: "SMS"}, wantFields: []string{"channel", "event_types"}},
		{name: "unknown event type", in: domain.Subscription{Channel: domain.ChannelInApp, EventTypes: []string{"job.failed", "job.metrics_recorded"}},
			wantFields: []string{"event_types[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := domain.NormalizeSubscription(tt.in, tt.rules)
			if tt.wantFields == nil {
				require.NoError(t, err)
				require.Equal(t, tt.wantTypes, got.EventTypes)
				return
			}
			var v *domain.ValidationError
			require.True(t, errors.As(err, &v), "%v", err)
			var fields []string
			for _, fv := range v.Violations {
				fields = append(fields, fv.Field)
			}
			require.ElementsMatch(t, tt.wantFields, fields)
		})
	}
}

// TestSecretRefsBelongToTheirOwner: a user may name only a secret that is
// theirs, and the refusal reads the same whether the name is another
// user's or names nothing, so that it does not tell which names exist.
func TestSecretRefsBelongToTheirOwner(t *testing.T) {
	t.Parallel()
	owners := map[string]string{"ada-hook": "ada", "bob-hook": "bob"}
	rules := domain.ValidationRules{SecretUsable: func(ref, user string) bool { return owners[ref] == user }}
	sub := func(user, ref string) domain.Subscription {
		return domain.Subscription{UserID: user, Channel: domain.ChannelWebhook, Target: "https://h.example.org/x",
			EventTypes: []string{"job.failed"}, SecretRef: ref}
	}
	_, err := domain.NormalizeSubscription(sub("ada", "ada-hook"), rules)
	require.NoError(t, err)

	_, errOther := domain.NormalizeSubscription(sub("ada", "bob-hook"), rules)
	_, errNone := domain.NormalizeSubscription(sub("ada", "no-such-hook"), rules)
	for _, err := range []error{errOther, errNone} {
		var v *domain.ValidationError
		require.True(t, errors.As(err, &v), "%v", err)
		require.Len(t, v.Violations, 1)
		require.Equal(t, "webhook_secret_ref", v.Violations[0].Field)
	}
	var vo, vn *domain.ValidationError
	require.True(t, errors.As(errOther, &vo))
	require.True(t, errors.As(errNone, &vn))
	require.Equal(t, vn.Violations[0].Description, vo.Violations[0].Description, "the same answer for another's name and no name")
	require.NotContains(t, vo.Error(), "bob-hook")
	require.NotContains(t, vn.Error(), "no-such-hook")
}

func TestClassify(t *testing.T) {
	t.Parallel()
	p, _ := domain.Classify(errors.New("plain"))
	require.False(t, p, "unclassified errors are transient")
	p, after := domain.Classify(domain.Transient(errors.New("busy"), 5))
	require.False(t, p)
	require.EqualValues(t, 5, after)
	p, _ = domain.Classify(domain.Permanent(errors.New("gone")))
	require.True(t, p)
}
