package domain

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ErrOutputNotFound: the job exists and the caller may see it, but the
// requested file is not in its output directory.
var ErrOutputNotFound = errors.New("no such file in the job's output directory")

// MaxOutputPathLen bounds the path of an output file in a request, in bytes.
const MaxOutputPathLen = 4096

// jobIDPattern is what a job id looks like: the ids the orchestrator makes
// (UUIDs) and nothing that could name another directory.
var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateJobID checks a job id given in a request: required, at most 128
// letters, digits, '.', '_' or '-', starting with a letter or digit.
func ValidateJobID(field, id string) error {
	switch {
	case id == "":
		return Invalid(field, "required")
	case !jobIDPattern.MatchString(id):
		return Invalid(field, "not a job id: at most 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return nil
}

// ValidateOutputPath checks a path within a job's output directory: a
// relative path of '/'-separated names, none of them "..", without NUL
// bytes, valid UTF-8, at most MaxOutputPathLen bytes. "." components and
// repeated or trailing separators are allowed (the path is cleaned);
// symbolic links are checked when the file is opened.
func ValidateOutputPath(field, path string) error {
	var v violations
	switch {
	case path == "":
		v.add(field, "required")
	case len(path) > MaxOutputPathLen:
		v.add(field, "at most %d bytes", MaxOutputPathLen)
	case !utf8.ValidString(path) || strings.ContainsRune(path, 0):
		v.add(field, "must be UTF-8 without NUL bytes")
	case strings.HasPrefix(path, "/"):
		v.add(field, "must be relative to the job's output directory, not absolute")
	case hasDotDot(path):
		v.add(field, `must not contain ".." (it would leave the job's output directory)`)
	}
	return v.err()
}

func hasDotDot(path string) bool {
	for c := range strings.SplitSeq(path, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}
