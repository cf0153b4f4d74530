package envconf

import (
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Hidden is what Redact shows instead of a secret.
const Hidden = "[REDACTED]"

// secretName matches the field names whose values are secrets: passwords,
// tokens, keys and secrets, but not the files, paths or references that
// name where they are kept.
var secretName = regexp.MustCompile(`(?i)(password|passwd|secret|token|key)s?$`)

// dsnPassword matches the password of a key=value DSN.
var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)

// Redact returns cfg, a struct or a pointer to one, as nested maps from field
// name to value for the startup log, hiding its secrets: fields tagged
// `secret:"true"`, fields that may be read from a file (`envFile`, the
// VAR or VAR_FILE secrets), fields named like a password, token, key or secret,
// values that log themselves redacted (slog.LogValuer, such as
// telemetry.Secret), and passwords inside URLs and DSNs. Functions,
// channels, interfaces and unexported fields are left out.
func Redact(cfg any) map[string]any {
	v := reflect.ValueOf(cfg)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	out, _ := redactValue(v, false).(map[string]any)
	return out
}

func redactValue(v reflect.Value, secret bool) any {
	if v.CanInterface() {
		if lv, ok := v.Interface().(slog.LogValuer); ok && v.Kind() != reflect.Struct {
			return lv.LogValue().Resolve().Any()
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return redactValue(v.Elem(), secret)
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			return t
		}
		m := make(map[string]any, v.NumField())
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Func, reflect.Chan, reflect.Interface, reflect.UnsafePointer:
				continue
			}
			rv := redactValue(v.Field(i), isSecret(f))
			if sub, ok := rv.(map[string]any); ok && len(sub) == 0 && f.Type.Kind() != reflect.Map {
				continue // a handle such as a logger or a client: nothing to show
			}
			m[f.Name] = rv
		}
		return m
	case reflect.String:
		s := v.String()
		if secret && s != "" {
			return Hidden
		}
		return RedactURL(s)
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 { // bytes: key material
			if secret || v.Len() > 0 {
				return Hidden
			}
			return ""
		}
		items := make([]any, v.Len())
		for i := range items {
			items[i] = redactValue(v.Index(i), secret)
		}
		return items
	case reflect.Map:
		m := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			m[fmt.Sprint(it.Key().Interface())] = redactValue(it.Value(), secret)
		}
		return m
	}
	if v.CanInterface() && !secret {
		if st, ok := v.Interface().(fmt.Stringer); ok {
			return st.String() // durations, log levels
		}
	}
	if secret && !v.IsZero() {
		return Hidden
	}
	if v.CanInterface() {
		return v.Interface()
	}
	return nil
}

// RedactURL hides the password of a URL (scheme://user:password@host/…) or
// of a key=value DSN (password=…); other strings are returned as they are.
func RedactURL(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return u.Redacted()
			}
		}
	}
	if dsnPassword.MatchString(s) {
		return dsnPassword.ReplaceAllString(s, "${1}"+Hidden)
	}
	return s
}
