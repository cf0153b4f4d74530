package slurm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Slurm error numbers the backend acts on.
const (
	errInvalidJobID = 2017 // ESLURM_INVALID_JOB_ID
	errAlreadyDone  = 2021 // ESLURM_ALREADY_DONE
)

// maxResponseBytes bounds an answer: GET /jobs lists every job slurmctld
// holds (a few kB each).
const maxResponseBytes = 512 << 20

// ErrorEntry is one element of the "errors" array of a slurmrestd answer.
type ErrorEntry struct {
	Code        int    // error_number or error_code
	Error       string // Slurm's text for the code
	Description string // what failed, e.g. "Unable to find JobId=7"
	Source      string
}

func (e *ErrorEntry) UnmarshalJSON(data []byte) error {
	var raw struct {
		ErrorNumber *int   `json:"error_number"`
		ErrorCode   *int   `json:"error_code"`
		Error       string `json:"error"`
		Description string `json:"description"`
		Source      string `json:"source"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*e = ErrorEntry{Error: raw.Error, Description: raw.Description, Source: raw.Source}
	switch {
	case raw.ErrorNumber != nil:
		e.Code = *raw.ErrorNumber
	case raw.ErrorCode != nil:
		e.Code = *raw.ErrorCode
	}
	return nil
}

func (e ErrorEntry) String() string {
	var parts []string
	if e.Description != "" {
		parts = append(parts, e.Description)
	}
	if e.Error != "" && e.Error != e.Description {
		parts = append(parts, e.Error)
	}
	if e.Code != 0 {
		parts = append(parts, fmt.Sprintf("slurm error %d", e.Code))
	}
	if len(parts) == 0 {
		return "unspecified error"
	}
	return strings.Join(parts, ": ")
}

// APIError is an answer of slurmrestd that reports failure.
type APIError struct {
	Method, Path string
	StatusCode   int
	Errors       []ErrorEntry
}

func (e *APIError) Error() string {
	msgs := make([]string, 0, len(e.Errors))
	for _, en := range e.Errors {
		msgs = append(msgs, en.String())
	}
	text := strings.Join(msgs, "; ")
	if text == "" {
		text = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("slurmrestd %s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, text)
}

// HasCode reports whether any error entry carries code.
func (e *APIError) HasCode(code int) bool {
	for _, en := range e.Errors {
		if en.Code == code {
			return true
		}
	}
	return false
}

// requestError reports whether the answer blames the request itself, so
// retrying it unchanged cannot help.
func (e *APIError) requestError() bool {
	if e.StatusCode >= 400 && e.StatusCode < 500 {
		return true
	}
	for _, en := range e.Errors {
		if (en.Code >= 2000 && en.Code < 3000) || en.Code >= 9000 {
			return true
		}
	}
	return false
}

// classify wraps an API error with the port's sentinel errors.
func classify(e *APIError) error {
	switch {
	case e.HasCode(errInvalidJobID):
		return fmt.Errorf("%w: %w", app.ErrUnknownJob, e)
	case e.StatusCode == http.StatusBadGateway || e.StatusCode == http.StatusServiceUnavailable ||
		e.StatusCode == http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %w", app.ErrSchedulerUnavailable, e)
	case e.requestError():
		return e
	case e.StatusCode >= 500 || e.StatusCode == 0:
		return fmt.Errorf("%w: %w", app.ErrSchedulerUnavailable, e)
	}
	return e
}

// response is the union of the answer shapes the backend reads.
type response struct {
	Errors []ErrorEntry `json:"errors"`
	JobID  *int64       `json:"job_id"`
	Jobs   []jobInfo    `json:"jobs"`
	// Status is the per-job outcome of DELETE /job/{id} (v0.0.42).
	Status []struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"status"`
	// LastUpdate is when slurmctld's job table last changed (GET /jobs).
	LastUpdate json.RawMessage `json:"last_update"`
}

// Plugins of slurmrestd, the first element of a request path.
const (
	apiSlurm   = "slurm"
	apiSlurmDB = "slurmdb"
)

// client talks HTTP to slurmrestd.
type client struct {
	http    *http.Client
	base    *url.URL
	user    string
	token   *tokenSource
	log     *slog.Logger
	timeout time.Duration

	// configured is Config.APIVersion; version the one in use once known.
	configured string
	mu         sync.Mutex
	version    string
}

func newClient(cfg Config) (*client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse BaseURL: %w", err)
	}
	tr := &http.Transport{
		Proxy:                 nil, // slurmrestd is reached directly; a proxy would see the token
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.HTTPTimeout,
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
	if u.Scheme == "unix" {
		sock := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", sock)
		}
		base = &url.URL{Scheme: "http", Host: "slurmrestd"}
	} else {
		tr.DialContext = dialer.DialContext
		if u.Scheme == "https" {
			tr.TLSHandshakeTimeout = 10 * time.Second
		}
	}
	var rt http.RoundTripper = tr
	if cfg.WrapTransport != nil {
		rt = cfg.WrapTransport(tr)
	}
	return &client{
		http:       &http.Client{Transport: rt, Timeout: cfg.HTTPTimeout},
		base:       base,
		configured: cfg.APIVersion,
		user:       cfg.UserName,
		token:      &tokenSource{static: cfg.Token, file: cfg.TokenFile},
		log:        cfg.Logger,
		timeout:    cfg.HTTPTimeout,
	}, nil
}

// apiVersion returns the OpenAPI version requests use: the configured one,
// or the newest of SupportedVersions that slurmrestd's GET /openapi/v3
// lists. The choice is made once, at the first request that succeeds in
// reading the specification, and logged; a configured version that
// slurmrestd does not serve is an error.
func (c *client) apiVersion(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != "" {
		return c.version, nil
	}
	served, err := c.servedVersions(ctx)
	if err != nil {
		return "", fmt.Errorf("read slurmrestd's OpenAPI versions: %w", err)
	}
	chosen := ""
	if c.configured != "" {
		if !slices.Contains(served, c.configured) {
			return "", fmt.Errorf("slurmrestd does not serve the configured API version %s (it serves %s)",
				c.configured, strings.Join(served, ", "))
		}
		chosen = c.configured
	} else {
		for _, v := range SupportedVersions {
			if slices.Contains(served, v) {
				chosen = v
				break
			}
		}
		if chosen == "" {
			return "", fmt.Errorf("slurmrestd serves none of the API versions this backend speaks (%s); it serves %s",
				strings.Join(SupportedVersions, ", "), strings.Join(served, ", "))
		}
	}
	c.version = chosen
	c.log.InfoContext(ctx, "slurmrestd API version chosen", "version", chosen,
		"configured", c.configured, "served", served, "supported", SupportedVersions)
	return chosen, nil
}

var versionInPath = regexp.MustCompile(`^/slurm/(v[0-9]+\.[0-9]+\.[0-9]+)/`)

// servedVersions reads GET /openapi/v3 and returns the versions of the
// slurm plugin it lists, newest first.
func (c *client) servedVersions(ctx context.Context) ([]string, error) {
	var spec struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	status, err := c.send(ctx, http.MethodGet, "/openapi/v3", nil, &spec)
	if err != nil {
		return nil, err
	}
	if status >= 300 {
		return nil, classify(&APIError{Method: http.MethodGet, Path: "/openapi/v3", StatusCode: status})
	}
	var served []string
	for p := range spec.Paths {
		if m := versionInPath.FindStringSubmatch(p); m != nil && !slices.Contains(served, m[1]) {
			served = append(served, m[1])
		}
	}
	slices.SortFunc(served, func(a, b string) int { return compareVersions(b, a) })
	return served, nil
}

// compareVersions orders "v0.0.40" < "v0.0.42" < "v0.1.0" numerically.
func compareVersions(a, b string) int {
	pa := strings.Split(strings.TrimPrefix(a, "v"), ".")
	pb := strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x - y
		}
	}
	return len(pa) - len(pb)
}

// path is the full request path of rest under api ("slurm" or "slurmdb").
func (c *client) path(ctx context.Context, api, rest string) (string, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return "", err
	}
	return "/" + api + "/" + v + rest, nil
}

// do sends one request to the slurm plugin and decodes the answer.
// Transport failures and answers with an HTTP error status return an error
// classified by classify; a 200 answer is returned with its errors array
// for the caller to judge.
func (c *client) do(ctx context.Context, method, path string, body any) (*response, error) {
	return c.doAPI(ctx, apiSlurm, method, path, body)
}

// doAPI is do for a plugin: apiSlurm or apiSlurmDB.
func (c *client) doAPI(ctx context.Context, api, method, path string, body any) (*response, error) {
	full, err := c.path(ctx, api, path)
	if err != nil {
		return nil, err
	}
	var out response
	status, err := c.send(ctx, method, full, body, &out)
	if err != nil {
		return nil, err
	}
	if status >= 300 {
		return nil, classify(&APIError{Method: method, Path: full, StatusCode: status, Errors: out.Errors})
	}
	return &out, nil
}

// send sends one request to full and decodes the answer into out; it
// returns the HTTP status. Transport failures and undecodable 5xx answers
// wrap app.ErrSchedulerUnavailable.
func (c *client) send(ctx context.Context, method, full string, body, out any) (int, error) {
	var rdr io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode %s %s: %w", method, full, err)
		}
		rdr = bytes.NewReader(data)
	}
	u := *c.base
	path, query, _ := strings.Cut(full, "?")
	u.Path, u.RawQuery = c.base.Path+path, query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rdr)
	if err != nil {
		return 0, fmt.Errorf("build %s %s: %w", method, full, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok, err := c.token.get()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, full, err)
	}
	if tok != "" {
		req.Header.Set("X-SLURM-USER-NAME", c.user)
		req.Header.Set("X-SLURM-USER-TOKEN", string(tok))
	}
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("slurmrestd %s %s: %w", method, full, ctx.Err())
		}
		return 0, fmt.Errorf("%w: slurmrestd %s %s: %w", app.ErrSchedulerUnavailable, method, full, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes+1))
	if err != nil {
		return 0, fmt.Errorf("%w: read slurmrestd %s %s: %w", app.ErrSchedulerUnavailable, method, full, err)
	}
	if len(data) > maxResponseBytes {
		return 0, fmt.Errorf("slurmrestd %s %s: answer larger than %d bytes", method, full, maxResponseBytes)
	}
	c.log.DebugContext(ctx, "slurmrestd request", "method", method, "path", full,
		"status", res.StatusCode, "duration", time.Since(start))

	if err := json.Unmarshal(data, out); err != nil {
		perr := fmt.Errorf("slurmrestd %s %s: HTTP %d: malformed answer: %w", method, full, res.StatusCode, err)
		if res.StatusCode >= 500 {
			return 0, fmt.Errorf("%w: %w", app.ErrSchedulerUnavailable, perr)
		}
		return 0, perr
	}
	return res.StatusCode, nil
}

// tokenSource yields the JWT: a fixed one, or the content of a file that is
// re-read when its size or modification time changes.
type tokenSource struct {
	static telemetry.Secret
	file   string

	mu      sync.Mutex
	cached  telemetry.Secret
	modTime time.Time
	size    int64
}

func (t *tokenSource) get() (telemetry.Secret, error) {
	if t.file == "" {
		return t.static, nil
	}
	fi, err := os.Stat(t.file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cached != "" && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return t.cached, nil
	}
	data, err := os.ReadFile(t.file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	tok = strings.TrimPrefix(tok, "SLURM_JWT=")
	if tok == "" {
		return "", errors.New("token file is empty")
	}
	t.cached, t.modTime, t.size = telemetry.Secret(tok), fi.ModTime(), fi.Size()
	return t.cached, nil
}
