package auditchain

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// KeySet holds the public keys that verify checkpoints, by key id: the current
// signing key and every key it replaced. A checkpoint names its key with
// KeyID, so checkpoints signed before a key rotation still verify as long as
// the previous public key stays in the set. The zero KeySet is empty.
type KeySet struct {
	keys map[string]ed25519.PublicKey
}

// NewKeySet returns a set holding pubs. A key that is not 32 bytes is an error;
// the same key given twice is kept once.
func NewKeySet(pubs ...ed25519.PublicKey) (KeySet, error) {
	var ks KeySet
	for _, p := range pubs {
		if err := ks.Add(p); err != nil {
			return KeySet{}, err
		}
	}
	return ks, nil
}

// Add puts pub into the set.
func (ks *KeySet) Add(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("key set: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if ks.keys == nil {
		ks.keys = make(map[string]ed25519.PublicKey)
	}
	ks.keys[KeyID(pub)] = slices.Clone(pub)
	return nil
}

// Len returns the number of keys.
func (ks KeySet) Len() int { return len(ks.keys) }

// Get returns the key with id.
func (ks KeySet) Get(id string) (ed25519.PublicKey, bool) {
	k, ok := ks.keys[id]
	return k, ok
}

// IDs returns the key ids in lexical order.
func (ks KeySet) IDs() []string { return slices.Sorted(maps.Keys(ks.keys)) }

// String returns the key ids separated by commas.
func (ks KeySet) String() string { return strings.Join(ks.IDs(), ",") }

// VerifyCheckpoint checks c with the key its KeyID names.
func (ks KeySet) VerifyCheckpoint(c *Checkpoint) error {
	if len(ks.keys) == 0 {
		return errors.New("no public key to verify the checkpoint with")
	}
	pub, ok := ks.keys[c.KeyID]
	if !ok {
		return fmt.Errorf("checkpoint key id %q is not among the verifying keys %s", truncate(c.KeyID, 64), ks)
	}
	return c.Verify(pub)
}

// ParsePublicKeys parses one or more Ed25519 public keys: PEM "PUBLIC KEY"
// blocks, or base64 keys separated by commas, spaces or newlines (the two
// forms may not be mixed in one input).
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	data = bytes.TrimSpace(data)
	var out []ed25519.PublicKey
	if bytes.HasPrefix(data, []byte("-----BEGIN")) {
		for len(bytes.TrimSpace(data)) > 0 {
			rest := bytes.TrimSpace(data)
			end := bytes.Index(rest, []byte("-----END"))
			if end < 0 {
				return nil, errors.New("malformed PEM: no END line")
			}
			nl := bytes.IndexByte(rest[end:], '\n')
			if nl < 0 {
				nl = len(rest) - end
			}
			pub, err := ParsePublicKey(rest[:end+nl])
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", len(out)+1, err)
			}
			out = append(out, pub)
			data = rest[end+nl:]
		}
		return out, nil
	}
	for _, f := range strings.FieldsFunc(string(data), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		pub, err := ParsePublicKey([]byte(f))
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", len(out)+1, err)
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("no public key")
	}
	return out, nil
}
