package auth

import "time"

// SetClock sets the clock of v's time checks and of its token cache.
func SetClock(v *Verifier, now func() time.Time) { v.now = now }

// RememberedTokens is the number of tokens v remembers.
func RememberedTokens(v *Verifier) int {
	v.verified.mu.RLock()
	defer v.verified.mu.RUnlock()
	return len(v.verified.m)
}

const MaxVerifiedTokens = maxVerifiedTokens
