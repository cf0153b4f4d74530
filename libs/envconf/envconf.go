// Package envconf fills configuration structs from environment variables
// named by `env` struct tags, through github.com/caarlos0/env/v11, with the
// fleet's rules: values are trimmed, a variable that is unset or blank leaves
// its field at the default already in the struct, lists are comma separated
// with blank items dropped, and a value that does not parse is an error
// naming the variable. Redact renders an effective configuration for the
// startup log with its secrets hidden.
package envconf

import (
	"errors"
	"fmt"
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
// their value. Every value that does not parse is reported, as
// KEY="value": what was wanted.
func Load(dst any, lookup Lookup) error {
	params, err := env.GetFieldParams(dst)
	if err != nil {
		return fmt.Errorf("envconf: %w", err)
	}
	environment := make(map[string]string, len(params))
	for _, p := range params {
		if p.Key == "" {
			continue
		}
		if v, ok := lookup(p.Key); ok {
			if v = strings.TrimSpace(v); v != "" {
				environment[p.Key] = v
			}
		}
	}
	err = env.ParseWithOptions(dst, env.Options{Environment: environment, FuncMap: parsers})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("envconf: %w", err)
	}
	keys := fieldKeys(reflect.TypeOf(dst).Elem(), "", nil)
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			errs = append(errs, e)
			continue
		}
		errs = append(errs, describe(pe, keys[pe.Name], environment))
	}
	return errors.Join(errs...)
}

// describe names the variable of a field that did not parse.
func describe(pe env.ParseError, candidates []string, environment map[string]string) error {
	var set []string
	for _, k := range candidates {
		if _, ok := environment[k]; ok {
			set = append(set, k)
		}
	}
	if len(set) != 1 {
		return fmt.Errorf("%s: %w", strings.Join(set, " or "), pe.Err)
	}
	return fmt.Errorf("%s=%q: %w", set[0], environment[set[0]], pe.Err)
}

// fieldKeys maps each tagged field's name to the variables it may be read from.
func fieldKeys(t reflect.Type, prefix string, keys map[string][]string) map[string][]string {
	if keys == nil {
		keys = map[string][]string{}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" && key != "-" {
			keys[f.Name] = append(keys[f.Name], prefix+key)
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() {
			fieldKeys(ft, prefix+f.Tag.Get("envPrefix"), keys)
		}
	}
	return keys
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

// Keys lists the variables Load reads for the struct v points to, sorted.
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
	slices.Sort(keys)
	return keys, nil
}
