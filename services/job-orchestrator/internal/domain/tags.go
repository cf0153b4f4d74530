package domain

import "unicode/utf8"

// ValidTag reports whether t is a tag a job may carry (see Spec.Validate):
// 1 to MaxTagLen printable characters without spaces.
func ValidTag(t string) bool {
	n := utf8.RuneCountInString(t)
	return n >= 1 && n <= MaxTagLen && utf8.ValidString(t) && printableNoSpace(t)
}
