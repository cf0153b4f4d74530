package auditchain

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// CheckpointDomain is the prefix of every signed checkpoint message. It keeps a
// checkpoint signature from being valid for anything else signed with the key.
const CheckpointDomain = "fleet-audit-checkpoint-v1"

// Checkpoint is a signed statement that the record with Sequence has hash HeadHash.
type Checkpoint struct {
	// Sequence is the last record covered.
	Sequence uint64
	// HeadHash is the hash of the record with Sequence.
	HeadHash Hash
	// SignedAt is when the checkpoint was signed.
	SignedAt time.Time
	// KeyID names the public key that verifies Signature; see KeyID.
	KeyID string
	// Signature is the Ed25519 signature over SignedMessage.
	Signature []byte
}

// SignedMessage returns the bytes the checkpoint's signature covers:
//
//	"fleet-audit-checkpoint-v1"  25 ASCII bytes (CheckpointDomain)
//	0x00                         1 byte
//	sequence                     uint64, big-endian
//	head_hash                    32 bytes
//	signed_at                    int64 seconds since 1970-01-01T00:00:00Z, big-endian,
//	                             then uint32 nanoseconds within that second, big-endian
//
// KeyID is not signed: it only selects the key, and the verifier checks that it
// names the key it verifies with.
func (c *Checkpoint) SignedMessage() []byte {
	b := make([]byte, 0, len(CheckpointDomain)+1+8+len(c.HeadHash)+12)
	b = append(b, CheckpointDomain...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, c.Sequence)
	b = append(b, c.HeadHash[:]...)
	return appendTime(b, c.SignedAt)
}

// Verify checks that the checkpoint names pub's key id and carries a valid
// signature by pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("no valid public key to verify the checkpoint with")
	}
	if want := KeyID(pub); c.KeyID != want {
		return fmt.Errorf("checkpoint key id %q is not the verifying key %q", truncate(c.KeyID, 64), want)
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return fmt.Errorf("signature is %d bytes, want %d", len(c.Signature), ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, c.SignedMessage(), c.Signature) {
		return errors.New("Ed25519 signature does not verify")
	}
	return nil
}

// KeyID returns the id of a public key: the first 8 bytes of SHA-256 of the raw
// 32-byte key, as 16 lowercase hex digits.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Signer signs checkpoints with one Ed25519 private key.
type Signer struct {
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	keyID string
}

// NewSigner returns a signer for priv.
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("new signer: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("new signer: private key has no Ed25519 public key")
	}
	return &Signer{priv: priv, pub: pub, keyID: KeyID(pub)}, nil
}

// PublicKey returns the key that verifies the signer's checkpoints.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// KeyID returns the id of the signer's public key.
func (s *Signer) KeyID() string { return s.keyID }

// Sign returns a checkpoint over head signed at signedAt (kept to microseconds, in UTC).
func (s *Signer) Sign(head Head, signedAt time.Time) Checkpoint {
	c := Checkpoint{
		Sequence: head.Sequence,
		HeadHash: head.Hash,
		SignedAt: signedAt.UTC().Truncate(time.Microsecond),
		KeyID:    s.keyID,
	}
	c.Signature = ed25519.Sign(s.priv, c.SignedMessage())
	return c
}
