// Package schemas embeds the Avro schemas of the fleet's Kafka topics.
//
// Each topic has a directory avro/<topic>/ holding one file per schema
// version, v1.avsc, v2.avsc, ... A new version must be FULL compatible with
// the previous one (tools/cmd/schemacheck enforces it); the namespace and
// record names stay the same across versions so that Avro schema resolution
// matches them.
package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
)

//go:embed avro
var files embed.FS

// Dir is the directory, relative to this module's root, that holds the schemas.
const Dir = "avro"

// Version is one schema version of a topic.
type Version struct {
	Topic   string
	Version int
	// Path is the file's path relative to the module root, e.g. avro/job-lifecycle/v1.avsc.
	Path   string
	Schema []byte
}

// FS returns the embedded schema tree, rooted at the module root (paths start with avro/).
func FS() fs.FS { return files }

// Topics returns the topics that have at least one schema version, sorted.
func Topics() ([]string, error) {
	return TopicsIn(files)
}

// TopicsIn is Topics over another tree laid out like the embedded one.
func TopicsIn(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, Dir)
	if err != nil {
		return nil, fmt.Errorf("list schema topics: %w", err)
	}
	var topics []string
	for _, e := range entries {
		if e.IsDir() {
			topics = append(topics, e.Name())
		}
	}
	sort.Strings(topics)
	return topics, nil
}

// Versions returns every schema version of topic in ascending order.
func Versions(topic string) ([]Version, error) {
	return VersionsIn(files, topic)
}

// VersionsIn is Versions over another tree laid out like the embedded one.
// File names must be v<N>.avsc with N >= 1 and the versions must be 1..N
// without gaps.
func VersionsIn(fsys fs.FS, topic string) ([]Version, error) {
	dir := path.Join(Dir, topic)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("list schema versions of %s: %w", topic, err)
	}
	var out []Version
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".avsc") {
			continue
		}
		n, err := ParseVersion(e.Name())
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		p := path.Join(dir, e.Name())
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		out = append(out, Version{Topic: topic, Version: n, Path: p, Schema: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s: no schema versions", topic)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, v := range out {
		if v.Version != i+1 {
			return nil, fmt.Errorf("topic %s: versions must be v1..v%d without gaps, found v%d at position %d", topic, len(out), v.Version, i+1)
		}
	}
	return out, nil
}

// Latest returns the newest schema version of topic.
func Latest(topic string) (Version, error) {
	vs, err := Versions(topic)
	if err != nil {
		return Version{}, err
	}
	return vs[len(vs)-1], nil
}

// ParseVersion returns N for a file named vN.avsc.
func ParseVersion(name string) (int, error) {
	s, ok := strings.CutSuffix(name, ".avsc")
	if ok {
		s, ok = strings.CutPrefix(s, "v")
	}
	n, err := strconv.Atoi(s)
	if !ok || err != nil || n < 1 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("schema file %q: want v<N>.avsc with N >= 1", name)
	}
	return n, nil
}

// latestVersions caches LatestVersion by topic: the embedded tree never
// changes, and every new event asks.
var latestVersions sync.Map // topic → int

// LatestVersion returns the newest version number of topic without reading
// the schema files.
func LatestVersion(topic string) (int, error) {
	if n, ok := latestVersions.Load(topic); ok {
		return n.(int), nil
	}
	entries, err := fs.ReadDir(files, path.Join(Dir, topic))
	if err != nil {
		return 0, fmt.Errorf("list schema versions of %s: %w", topic, err)
	}
	latest := 0
	for _, e := range entries {
		if n, err := ParseVersion(e.Name()); err == nil && n > latest {
			latest = n
		}
	}
	if latest == 0 {
		return 0, fmt.Errorf("topic %s: no schema versions", topic)
	}
	latestVersions.Store(topic, latest)
	return latest, nil
}
