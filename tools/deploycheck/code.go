package deploycheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// ServiceCode is what a service's source says about how it is run.
type ServiceCode struct {
	// Name is the service's name (its directory under services/).
	Name string
	// Env holds every environment variable name the service or the shared
	// libraries it uses may read.
	Env map[string]bool
	// EnvPrefixes are name prefixes of variable families read by a computed
	// name (e.g. WEBHOOK_SECRET_<ref>).
	EnvPrefixes []string
	// GRPCPort and HTTPPort are the default listen ports (DefaultGRPCAddr and
	// DefaultHTTPAddr of internal/service).
	GRPCPort, HTTPPort int
}

// Reads reports whether the service reads the environment variable name.
func (c ServiceCode) Reads(name string) bool {
	if c.Env[name] {
		return true
	}
	for _, p := range c.EnvPrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

// envNamePattern matches the string literals that name environment variables:
// upper case words joined by underscores, e.g. KAFKA_BROKERS; a trailing
// underscore marks a prefix.
const envNamePattern = `^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+_?$`

// runtimeEnv are read by the Go runtime itself.
func runtimeEnv() []string { return []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "GODEBUG"} }

// libEnvFiles maps a shared package to the files declaring the environment
// variables it reads. libs/service and libs/telemetry are used by every
// service (the runtime); the others count when the service imports them.
func libEnvFiles() map[string][]string {
	return map[string][]string{
		"github.com/cosmic-horizons/fleet/libs/service":    {"libs/service/config.go", "libs/service/brokers.go"},
		"github.com/cosmic-horizons/fleet/libs/telemetry":  {"libs/telemetry/setup.go"},
		"github.com/cosmic-horizons/fleet/libs/kafkabus":   {"libs/kafkabus/client.go"},
		"github.com/cosmic-horizons/fleet/libs/events":     {"libs/events/catalogue.go"},
		"github.com/cosmic-horizons/fleet/libs/auditchain": {"libs/auditchain/keys.go"},
		"github.com/cosmic-horizons/fleet/libs/auth":       {"libs/auth/config.go", "libs/auth/auth.go"},
	}
}

// ReadServiceCode parses the non-test Go files of services/<name> (test
// helper directories excluded) and the environment files of the shared
// packages it imports, under the repository root.
func ReadServiceCode(root, name string) (ServiceCode, error) {
	code := ServiceCode{Name: name, Env: map[string]bool{}}
	envName := regexp.MustCompile(envNamePattern)
	for _, e := range runtimeEnv() {
		code.Env[e] = true
	}
	imports := map[string]bool{
		"github.com/cosmic-horizons/fleet/libs/service":   true,
		"github.com/cosmic-horizons/fleet/libs/telemetry": true,
	}
	fset := token.NewFileSet()
	var grpcAddr, httpAddr string
	dir := filepath.Join(root, "services", name)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "testdata", "testutil", "servicetest":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imports[p] = true
		}
		code.collect(f, envName)
		if filepath.Base(filepath.Dir(path)) == "service" {
			if v := constString(f, "DefaultGRPCAddr"); v != "" {
				grpcAddr = v
			}
			if v := constString(f, "DefaultHTTPAddr"); v != "" {
				httpAddr = v
			}
		}
		return nil
	})
	if err != nil {
		return ServiceCode{}, fmt.Errorf("read service %s: %w", name, err)
	}
	for pkg, files := range libEnvFiles() {
		if !imports[pkg] {
			continue
		}
		for _, file := range files {
			f, err := parser.ParseFile(fset, filepath.Join(root, file), nil, parser.SkipObjectResolution)
			if err != nil {
				return ServiceCode{}, fmt.Errorf("read service %s: parse %s: %w", name, file, err)
			}
			code.collect(f, envName)
		}
	}
	if code.GRPCPort, err = port(grpcAddr); err != nil {
		return ServiceCode{}, fmt.Errorf("service %s: DefaultGRPCAddr: %w", name, err)
	}
	if code.HTTPPort, err = port(httpAddr); err != nil {
		return ServiceCode{}, fmt.Errorf("service %s: DefaultHTTPAddr: %w", name, err)
	}
	return code, nil
}

// collect records the environment variable names in f: string literals shaped
// like one (words joined by underscores), the values of constants named Env*,
// which may be one word (SCHEDULER), and the names in env:"..." and
// envFile:"..." struct tags (an envPrefix tag counts as a prefix).
func (c *ServiceCode) collect(f *ast.File, envName *regexp.Regexp) {
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if !strings.HasPrefix(id.Name, "Env") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && s != "" {
						c.Env[s] = true
					}
				}
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if field, ok := n.(*ast.Field); ok && field.Tag != nil {
			if tag, err := strconv.Unquote(field.Tag.Value); err == nil {
				st := reflect.StructTag(tag)
				if name, _, _ := strings.Cut(st.Get("env"), ","); name != "" {
					c.Env[name] = true
				}
				// A secret that may be given through a file (envconf's envFile).
				if name := st.Get("envFile"); name != "" {
					c.Env[name] = true
				}
				// The nested struct's variables, e.g. KAFKA_TLS_CA_FILE.
				if prefix := st.Get("envPrefix"); prefix != "" {
					c.EnvPrefixes = append(c.EnvPrefixes, prefix)
				}
			}
			return false
		}
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || !envName.MatchString(s) {
			return true
		}
		if strings.HasSuffix(s, "_") {
			c.EnvPrefixes = append(c.EnvPrefixes, s)
		} else {
			c.Env[s] = true
		}
		return true
	})
}

// constString returns the value of the string constant name declared in f.
func constString(f *ast.File, name string) string {
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name != name || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					return s
				}
			}
		}
	}
	return ""
}

func port(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("address %q: bad port", addr)
	}
	return n, nil
}
