package local

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultKillGrace = 10 * time.Second
	DefaultPath      = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	DefaultLang      = "C.UTF-8"
)

// Config configures the local backend.
type Config struct {
	// WorkRoot holds one directory per job. Required; created if missing.
	WorkRoot string
	// Logger receives the backend's logs; slog.Default() when nil.
	Logger *slog.Logger
	// MaxConcurrent is the number of jobs that run at once; further jobs
	// wait as queued. Default: the number of CPUs.
	MaxConcurrent int
	// KillGrace is how long a job may take to exit after SIGTERM (walltime
	// reached, cancel, shutdown) before its process group gets SIGKILL.
	KillGrace time.Duration
	// Path is the PATH a job starts with (a job's environment may override
	// it). Default DefaultPath.
	Path string
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = runtime.NumCPU()
	}
	if c.KillGrace == 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.WorkRoot == "" {
		errs = append(errs, errors.New("WorkRoot is required"))
	} else if !filepath.IsAbs(c.WorkRoot) {
		errs = append(errs, fmt.Errorf("WorkRoot %q must be an absolute path", c.WorkRoot))
	}
	if c.MaxConcurrent < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrent %d must not be negative", c.MaxConcurrent))
	}
	if c.KillGrace < 0 {
		errs = append(errs, fmt.Errorf("KillGrace %s must not be negative", c.KillGrace))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local scheduler config: %w", err)
	}
	return nil
}
