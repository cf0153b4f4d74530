package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// ListInput is the input of ListJobs. Zero values mean "no filter".
type ListInput struct {
	Statuses      []domain.Status
	System        string
	Tags          []string
	CreatedAfter  time.Time
	CreatedBefore time.Time
	PageSize      int
	PageToken     string
}

// ListJobs returns one page of the actor's jobs (every user's for an
// admin), newest first, and the token of the next page ("" on the last).
// Page tokens are opaque and signed: a token that was altered, forged or
// used with other filters is refused as invalid.
func (a *App) ListJobs(ctx context.Context, actor Actor, in ListInput) ([]*domain.Job, string, error) {
	var v []domain.FieldViolation
	bad := func(field, format string, args ...any) {
		v = append(v, domain.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	if n := len(domain.Statuses()); len(in.Statuses) > n {
		// Checked first, so that a huge list gets one violation, not one
		// per entry.
		bad("statuses", "at most %d statuses, got %d", n, len(in.Statuses))
	} else {
		for i, s := range in.Statuses {
			if !s.Valid() {
				bad(fmt.Sprintf("statuses[%d]", i), "unknown or unspecified status")
			}
		}
	}
	if in.System != "" {
		if _, ok := a.cat.System(in.System); !ok {
			bad("tacc_system", "system %q is not in the catalogue", in.System)
		}
	}
	if len(in.Tags) > domain.MaxTags {
		bad("tags", "at most %d tags, got %d", domain.MaxTags, len(in.Tags))
	} else {
		for i, t := range in.Tags {
			if !domain.ValidTag(t) {
				bad(fmt.Sprintf("tags[%d]", i), "1 to %d printable characters without spaces", domain.MaxTagLen)
			}
		}
	}
	for _, t := range []struct {
		field string
		at    time.Time
	}{{"created_after", in.CreatedAfter}, {"created_before", in.CreatedBefore}} {
		if !t.at.IsZero() && !domain.ValidInstant(t.at) {
			bad(t.field, "must be between %s and %s", domain.MinInstant.Format(time.RFC3339), domain.MaxInstant.Format(time.RFC3339))
		}
	}
	if !in.CreatedAfter.IsZero() && !in.CreatedBefore.IsZero() && !in.CreatedBefore.After(in.CreatedAfter) {
		bad("created_before", "must be after created_after")
	}
	size := in.PageSize
	switch {
	case size == 0:
		size = a.cfg.DefaultPageSize
	case size < 0 || size > a.cfg.MaxPageSize:
		bad("page_size", "must be 0 (default %d) to %d", a.cfg.DefaultPageSize, a.cfg.MaxPageSize)
	}
	q := ListQuery{
		Statuses: slices.Clone(in.Statuses), System: in.System, Tags: slices.Clone(in.Tags),
		CreatedAfter: in.CreatedAfter, CreatedBefore: in.CreatedBefore, Limit: size + 1,
	}
	if !actor.Admin {
		q.Owner = actor.UserID
	}
	filter := a.filterHash(q)
	if in.PageToken != "" {
		c, err := a.decodePageToken(in.PageToken, filter)
		if err != nil {
			bad("page_token", "%v", err)
		} else {
			q.After = &c
		}
	}
	if len(v) > 0 {
		return nil, "", &domain.ValidationError{Violations: v}
	}
	jobs, err := a.repo.List(ctx, q)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	var next string
	if len(jobs) > size {
		jobs = jobs[:size]
		last := jobs[len(jobs)-1]
		next = a.encodePageToken(Cursor{CreatedAt: last.CreatedAt, ID: last.ID}, filter)
	}
	return jobs, next, nil
}

type pageToken struct {
	CreatedAt int64  `json:"t"`
	ID        string `json:"i"`
	Filter    string `json:"f"`
}

// filterHash fingerprints the query a token belongs to (owner included).
func (a *App) filterHash(q ListQuery) string {
	st := make([]string, 0, len(q.Statuses))
	for _, s := range q.Statuses {
		st = append(st, string(s))
	}
	slices.Sort(st)
	parts := []string{q.Owner, strings.Join(st, ","), q.System,
		fmt.Sprint(q.CreatedAfter.UnixNano()), fmt.Sprint(q.CreatedBefore.UnixNano())}
	if len(q.Tags) > 0 {
		tags := slices.Clone(q.Tags)
		slices.Sort(tags)
		parts = append(parts, "tags="+strings.Join(tags, "\x01"))
	}
	raw := strings.Join(parts, "\x00")
	sum := sha256.Sum256([]byte(raw))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

func (a *App) sign(b []byte) []byte {
	m := hmac.New(sha256.New, []byte(a.cfg.PageTokenKey))
	m.Write(b)
	return m.Sum(nil)
}

func (a *App) encodePageToken(c Cursor, filter string) string {
	body, _ := json.Marshal(pageToken{CreatedAt: c.CreatedAt.UnixNano(), ID: c.ID, Filter: filter})
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(a.sign(body))
}

func (a *App) decodePageToken(tok, filter string) (Cursor, error) {
	bodyPart, sigPart, ok := strings.Cut(tok, ".")
	if !ok {
		return Cursor{}, fmt.Errorf("malformed page token")
	}
	body, err1 := base64.RawURLEncoding.DecodeString(bodyPart)
	sig, err2 := base64.RawURLEncoding.DecodeString(sigPart)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, a.sign(body)) {
		return Cursor{}, fmt.Errorf("page token is not one this service issued")
	}
	var pt pageToken
	if err := json.Unmarshal(body, &pt); err != nil {
		return Cursor{}, fmt.Errorf("malformed page token")
	}
	if pt.Filter != filter {
		return Cursor{}, fmt.Errorf("page token belongs to a listing with other filters")
	}
	return Cursor{CreatedAt: time.Unix(0, pt.CreatedAt).UTC(), ID: pt.ID}, nil
}
