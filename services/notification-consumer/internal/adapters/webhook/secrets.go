package webhook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

var refPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ErrUnknownSecret is returned for a reference that names no secret.
var ErrUnknownSecret = errors.New("unknown webhook secret")

// Secrets resolves a secret reference from the environment
// (<EnvPrefix><REF>, upper-cased, '.' and '-' as '_') or from the file
// <Dir>/<ref>. Secrets are never logged.
//
// Owners, when set, says which users may sign with each reference: a
// reference it does not list belongs to no user. Without Owners every user
// may name every reference (one shared set of secrets).
type Secrets struct {
	Lookup    func(string) (string, bool)
	EnvPrefix string
	Dir       string
	Owners    map[string][]string
}

// Secret returns the secret ref names.
func (s Secrets) Secret(ref string) ([]byte, error) {
	if !refPattern.MatchString(ref) || ref == "." || ref == ".." {
		return nil, fmt.Errorf("%w: malformed reference", ErrUnknownSecret)
	}
	if s.Lookup != nil {
		name := s.EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(ref))
		if v, ok := s.Lookup(name); ok && v != "" {
			return []byte(v), nil
		}
	}
	if s.Dir != "" {
		b, err := os.ReadFile(filepath.Join(s.Dir, ref))
		if err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return []byte(strings.TrimSpace(string(b))), nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownSecret, ref)
}

// Exists reports whether ref resolves.
func (s Secrets) Exists(ref string) bool {
	_, err := s.Secret(ref)
	return err == nil
}

// UsableBy reports whether user may sign with ref: it resolves and, when
// Owners is set, lists user among its owners.
func (s Secrets) UsableBy(ref, user string) bool {
	if s.Owners != nil && !slices.Contains(s.Owners[ref], user) {
		return false
	}
	return s.Exists(ref)
}

// ErrSecretNotOwned is the permanent failure of a delivery whose user may
// not sign with the subscription's secret (the owners changed after the
// subscription was made).
var ErrSecretNotOwned = errors.New("webhook secret does not belong to the subscription's user")

// ownerChecker is implemented by a SecretResolver that knows the owners
// of its references (Secrets does).
type ownerChecker interface {
	UsableBy(ref, user string) bool
}
