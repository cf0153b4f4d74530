// Package envconf fills configuration structs from environment variables
// named by `env` struct tags, through github.com/caarlos0/env/v11, with the
// fleet's rules: values are trimmed, a variable that is unset or blank leaves
// its field at the default already in the struct, lists are comma separated
// with blank items dropped, and a value that does not parse is an error
// naming the variable. A secret may be given directly or through a file:
// a field tagged `env:"KEY" envFile:"KEY_FILE"` takes the trimmed content of
// the file KEY_FILE names, and setting both is an error. Redact renders an
// effective configuration for the startup log with its secrets hidden.
package envconf

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Lookup reads one environment variable; os.LookupEnv is the usual one.
type Lookup func(key string) (string, bool)

// Load sets the fields of the struct dst points to from the variables their
// `env` tags name (nested structs included, prefixed by `envPrefix`),
// reading each through lookup. Fields whose variable is unset or blank keep
// their value. A field also tagged `envFile:"KEY_FILE"` may instead be given
// by the file KEY_FILE names: its content, trimmed, is the value; KEY and
// KEY_FILE both set is an error, and so is a file that cannot be read.
// Every value that does not parse is reported, as KEY="value": what was
// wanted (without the value when it is a secret or came from a file).
func Load(dst any, lookup Lookup) error {
	params, err := env.GetFieldParams(dst)
	if err != nil {
		return fmt.Errorf("envconf: %w", err)
	}
	environment := make(map[string]string, len(params))
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}
	for _, p := range params {
		if p.Key == "" {
			continue
		}
		if v := get(p.Key); v != "" {
			environment[p.Key] = v
		}
	}
	fields := fieldKeys(reflect.TypeOf(dst).Elem(), "", nil)
	var errs []error
	fromFile := map[string]string{} // KEY → KEY_FILE of the values read from files
	for _, f := range fields.files {
		path := get(f.fileKey)
		if path == "" {
			continue
		}
		if _, ok := environment[f.key]; ok {
			errs = append(errs, fmt.Errorf("set %s or %s, not both", f.key, f.fileKey))
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.fileKey, err))
			delete(environment, f.key)
			continue
		}
		if v := strings.TrimSpace(string(b)); v != "" {
			environment[f.key] = v
			fromFile[f.key] = f.fileKey
		} else {
			delete(environment, f.key)
		}
	}
	err = env.ParseWithOptions(dst, env.Options{Environment: environment, FuncMap: parsers})
	if err == nil {
		return errors.Join(errs...)
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("envconf: %w", errors.Join(append(errs, err)...))
	}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			errs = append(errs, e)
			continue
		}
		errs = append(errs, describe(pe, fields, environment, fromFile))
	}
	return errors.Join(errs...)
}

// describe names the variable of a field that did not parse, with its value
// unless the field is a secret or its value came from a file.
func describe(pe env.ParseError, fields fieldSet, environment, fromFile map[string]string) error {
	var set []string
	for _, k := range fields.keys[pe.Name] {
		if _, ok := environment[k]; ok {
			set = append(set, k)
		}
	}
	if len(set) != 1 {
		return fmt.Errorf("%s: %w", strings.Join(set, " or "), pe.Err)
	}
	if fk, ok := fromFile[set[0]]; ok {
		return fmt.Errorf("%s (from %s): %w", set[0], fk, pe.Err)
	}
	if fields.secret[set[0]] {
		return fmt.Errorf("%s: %w", set[0], pe.Err)
	}
	return fmt.Errorf("%s=%q: %w", set[0], environment[set[0]], pe.Err)
}

// fieldSet is what the tags of a configuration struct say.
type fieldSet struct {
	// keys maps each tagged field's name to the variables it may be read from.
	keys map[string][]string
	// files are the variables that may be given through a file.
	files []fileKey
	// secret holds the variables of secret fields, whose values no error shows.
	secret map[string]bool
}

// fileKey pairs a variable with the one naming its file.
type fileKey struct{ key, fileKey string }

// fieldKeys collects the variables of the tagged fields of t.
func fieldKeys(t reflect.Type, prefix string, fs *fieldSet) fieldSet {
	if fs == nil {
		fs = &fieldSet{keys: map[string][]string{}, secret: map[string]bool{}}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" && key != "-" {
			fs.keys[f.Name] = append(fs.keys[f.Name], prefix+key)
			if file := f.Tag.Get("envFile"); file != "" {
				fs.files = append(fs.files, fileKey{key: prefix + key, fileKey: prefix + file})
			}
			if isSecret(f) {
				fs.secret[prefix+key] = true
			}
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() {
			fieldKeys(ft, prefix+f.Tag.Get("envPrefix"), fs)
		}
	}
	return *fs
}

// isSecret reports whether a field holds a secret: tagged `secret:"true"`,
// given through a file (`envFile`), or named like a password, token, key
// or secret.
func isSecret(f reflect.StructField) bool {
	return f.Tag.Get("secret") == "true" || f.Tag.Get("envFile") != "" || secretName.MatchString(f.Name)
}

// parsers give the fleet's wording to the errors of the common types and
// trim the items of lists.
var parsers = map[reflect.Type]env.ParserFunc{
	reflect.TypeFor[time.Duration](): func(v string) (any, error) {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, errors.New("want a duration such as 500ms or 10s")
		}
		return d, nil
	},
	reflect.TypeFor[int](): func(v string) (any, error) {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return n, nil
	},
	reflect.TypeFor[int64](): func(v string) (any, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return n, nil
	},
	reflect.TypeFor[uint64](): func(v string) (any, error) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, errors.New("want a non-negative integer")
		}
		return n, nil
	},
	reflect.TypeFor[float64](): func(v string) (any, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, errors.New("want a number")
		}
		return f, nil
	},
	reflect.TypeFor[bool](): func(v string) (any, error) {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	},
	reflect.TypeFor[[]string](): func(v string) (any, error) { return List(v), nil },
}

// List splits a comma separated value, trimming the items and dropping blank ones.
func List(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Keys lists the variables Load reads for the struct v points to, sorted:
// those of the env tags and those of the envFile tags.
func Keys(v any) ([]string, error) {
	params, err := env.GetFieldParams(v)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, p := range params {
		if p.Key != "" {
			keys = append(keys, p.Key)
		}
	}
	for _, f := range fieldKeys(reflect.TypeOf(v).Elem(), "", nil).files {
		keys = append(keys, f.fileKey)
	}
	slices.Sort(keys)
	return keys, nil
}
