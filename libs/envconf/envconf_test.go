package envconf_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

type tlsBlock struct {
	CAFile string `env:"CA_FILE"`
}

type sample struct {
	Name     string        `env:"NAME"`
	Every    time.Duration `env:"EVERY"`
	Count    int           `env:"COUNT"`
	Ratio    float64       `env:"RATIO"`
	On       bool          `env:"ON"`
	Brokers  []string      `env:"BROKERS"`
	TLS      tlsBlock      `envPrefix:"KAFKA_TLS_"`
	Password string        `env:"PASSWORD"`
	Other    string
}

func lookup(env map[string]string) envconf.Lookup {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	defaults := sample{Name: "default", Every: time.Second, Count: 3, Brokers: []string{"a:1"}, Other: "kept"}
	tests := []struct {
		name    string
		env     map[string]string
		want    sample
		wantErr []string
	}{
		{name: "nothing set keeps the defaults", env: map[string]string{}, want: defaults},
		{name: "blank values keep the defaults", env: map[string]string{"NAME": "  ", "EVERY": "", "BROKERS": " "}, want: defaults},
		{name: "values are trimmed, lists split", env: map[string]string{"NAME": " n ", "EVERY": " 2s", "COUNT": "7", "RATIO": "0.5", "ON": "true",
			"BROKERS": " b:1 , ,c:2 ", "KAFKA_TLS_CA_FILE": " /ca.pem "},
			want: sample{Name: "n", Every: 2 * time.Second, Count: 7, Ratio: 0.5, On: true, Brokers: []string{"b:1", "c:2"}, TLS: tlsBlock{CAFile: "/ca.pem"}, Other: "kept"}},
		{name: "bad values name their variables", env: map[string]string{"EVERY": "soon", "COUNT": "many", "ON": "yes please"},
			wantErr: []string{`EVERY="soon": want a duration`, `COUNT="many": want an integer`, `ON="yes please": want true or false`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := defaults
			got.Brokers = append([]string(nil), defaults.Brokers...)
			err := envconf.Load(&got, lookup(tt.env))
			if len(tt.wantErr) > 0 {
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	keys, err := envconf.Keys(&sample{})
	require.NoError(t, err)
	require.Equal(t, []string{"BROKERS", "COUNT", "EVERY", "KAFKA_TLS_CA_FILE", "NAME", "ON", "PASSWORD", "RATIO"}, keys)
}

type inner struct {
	TokenFile string
	APIToken  string
}

type effective struct {
	DatabaseURL string
	DSN         string
	AMQPURL     string
	Password    string
	SigningKey  []byte
	PageKey     telemetry.Secret
	Webhook     string `secret:"true"`
	Brokers     []string
	Interval    time.Duration
	Inner       inner
	Ptr         *inner
	Logger      *slog.Logger
	Hook        func()
	private     string
}

// The startup line shows the effective configuration and none of its secrets.
func TestRedact(t *testing.T) {
	t.Parallel()
	cfg := effective{
		DatabaseURL: "postgres://fleet:s3cret-db@db:5432/fleet?sslmode=disable",
		DSN:         "host=db user=fleet password=s3cret-dsn dbname=fleet",
		AMQPURL:     "amqp://guest:s3cret-amqp@127.0.0.1:5672/",
		Password:    "s3cret-pw",
		SigningKey:  []byte("s3cret-key"),
		PageKey:     telemetry.Secret("s3cret-page"),
		Webhook:     "s3cret-hook",
		Brokers:     []string{"k1:9092", "k2:9092"},
		Interval:    1500 * time.Millisecond,
		Inner:       inner{TokenFile: "/run/secrets/token", APIToken: "s3cret-token"},
		Ptr:         &inner{APIToken: "s3cret-ptr"},
		Logger:      slog.Default(),
		private:     "s3cret-private",
	}
	got := envconf.Redact(&cfg)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	line := string(b)
	require.NotContains(t, line, "s3cret", "no secret in %s", line)
	require.Equal(t, "postgres://fleet:xxxxx@db:5432/fleet?sslmode=disable", got["DatabaseURL"])
	require.Equal(t, "host=db user=fleet password=[REDACTED] dbname=fleet", got["DSN"])
	require.Equal(t, envconf.Hidden, got["Password"])
	require.Equal(t, envconf.Hidden, got["SigningKey"])
	require.Equal(t, envconf.Hidden, got["Webhook"])
	require.Equal(t, []any{"k1:9092", "k2:9092"}, got["Brokers"])
	require.Equal(t, "1.5s", got["Interval"])
	require.Equal(t, map[string]any{"TokenFile": "/run/secrets/token", "APIToken": envconf.Hidden}, got["Inner"])
	require.NotContains(t, got, "Logger")
	require.NotContains(t, got, "Hook")
	require.NotContains(t, got, "private")
	require.True(t, strings.Contains(line, `"PageKey":"[REDACTED]"`), line)
}

type withFile struct {
	Name  string        `env:"NAME"`
	Value string        `env:"VALUE" envFile:"VALUE_FILE"`
	Every time.Duration `env:"EVERY" envFile:"EVERY_FILE"`
	TLS   struct {
		Pass string `env:"PASS" envFile:"PASS_FILE"`
	} `envPrefix:"DB_"`
}

// A value is given directly or through the file VAR_FILE names, never both;
// the file's content is trimmed, and an error names the variable.
func TestLoadFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	value := write("value", "s3cret-from-file\n")
	pass := write("pass", "  s3cret-pass \r\n")
	blank := write("blank", "\n")
	badDuration := write("every", "s3cret-not-a-duration\n")
	tests := []struct {
		name      string
		env       map[string]string
		want      withFile
		wantErr   []string
		notInErrs string
	}{
		{name: "directly", env: map[string]string{"VALUE": " v ", "DB_PASS": "p"}, want: withFile{Name: "n", Value: "v", TLS: struct {
			Pass string `env:"PASS" envFile:"PASS_FILE"`
		}{Pass: "p"}}},
		{name: "through files, trimmed, prefixed", env: map[string]string{"VALUE_FILE": " " + value + " ", "DB_PASS_FILE": pass},
			want: withFile{Name: "n", Value: "s3cret-from-file", TLS: struct {
				Pass string `env:"PASS" envFile:"PASS_FILE"`
			}{Pass: "s3cret-pass"}}},
		{name: "a blank file path is unset", env: map[string]string{"VALUE": "v", "VALUE_FILE": "  "}, want: withFile{Name: "n", Value: "v"}},
		{name: "a blank file keeps the default", env: map[string]string{"VALUE_FILE": blank}, want: withFile{Name: "n"}},
		{name: "both set", env: map[string]string{"VALUE": "v", "VALUE_FILE": value}, wantErr: []string{"set VALUE or VALUE_FILE, not both"}},
		{name: "missing file", env: map[string]string{"DB_PASS_FILE": filepath.Join(dir, "none")},
			wantErr: []string{"DB_PASS_FILE: open " + filepath.Join(dir, "none")}},
		{name: "a bad value from a file names the file, not the value", env: map[string]string{"EVERY_FILE": badDuration},
			wantErr: []string{"EVERY (from EVERY_FILE): want a duration"}, notInErrs: "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := withFile{Name: "n"}
			err := envconf.Load(&got, lookup(tt.env))
			if len(tt.wantErr) > 0 {
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				if tt.notInErrs != "" {
					require.NotContains(t, err.Error(), tt.notInErrs)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// A secret that does not parse is named without its value.
func TestLoadSecretNotInError(t *testing.T) {
	t.Parallel()
	var c struct {
		APIKey  time.Duration `env:"API_KEY"`
		Timeout time.Duration `env:"HOOK" secret:"true"`
	}
	err := envconf.Load(&c, lookup(map[string]string{"API_KEY": "s3cret-1", "HOOK": "s3cret-2"}))
	require.ErrorContains(t, err, "API_KEY: want a duration")
	require.ErrorContains(t, err, "HOOK: want a duration")
	require.NotContains(t, err.Error(), "s3cret")
}

func TestKeysWithFiles(t *testing.T) {
	t.Parallel()
	keys, err := envconf.Keys(&withFile{})
	require.NoError(t, err)
	require.Equal(t, []string{"DB_PASS", "DB_PASS_FILE", "EVERY", "EVERY_FILE", "NAME", "VALUE", "VALUE_FILE"}, keys)
}

// A secret read from a file is hidden on the startup line, whatever its
// field is called.
func TestRedactSecretFromFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "value")
	require.NoError(t, os.WriteFile(p, []byte("s3cret-from-file\n"), 0o600))
	var c withFile
	require.NoError(t, envconf.Load(&c, lookup(map[string]string{"VALUE_FILE": p, "NAME": "shown"})))
	require.Equal(t, "s3cret-from-file", c.Value)
	got := envconf.Redact(&c)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	require.NotContains(t, string(b), "s3cret", string(b))
	require.Equal(t, envconf.Hidden, got["Value"])
	require.Equal(t, "shown", got["Name"])
}
