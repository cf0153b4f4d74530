package webhook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var refPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ErrUnknownSecret is returned for a reference that names no secret.
var ErrUnknownSecret = errors.New("unknown webhook secret")

// Secrets resolves a secret reference from the environment
// (<EnvPrefix><REF>, upper-cased, '.' and '-' as '_') or from the file
// <Dir>/<ref>. Secrets are never logged.
type Secrets struct {
	Lookup    func(string) (string, bool)
	EnvPrefix string
	Dir       string
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
