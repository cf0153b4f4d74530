package auditchain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cosmic-horizons/fleet/libs/envconf"
)

// Environment variables read by KeyConfigFromEnv.
const (
	EnvSigningKey       = "AUDIT_SIGNING_KEY"
	EnvSigningKeyFile   = "AUDIT_SIGNING_KEY_FILE"
	EnvVerifyingKey     = "AUDIT_PUBLIC_KEY"
	EnvVerifyingKeyFile = "AUDIT_PUBLIC_KEY_FILE"
	// EnvVerifyKeys lists the public keys of earlier signing keys (base64,
	// separated by commas), so checkpoints signed before a rotation verify.
	EnvVerifyKeys = "AUDIT_VERIFY_KEYS"
	// EnvVerifyKeysFile is a file of earlier public keys (PEM blocks or base64 lines).
	EnvVerifyKeysFile = "AUDIT_VERIFY_KEYS_FILE"
)

const (
	pemTypePrivateKey = "PRIVATE KEY"
	pemTypePublicKey  = "PUBLIC KEY"
	maxKeyFileBytes   = 64 << 10
)

// KeyConfig says where the checkpoint keys come from; the env tags name the
// variables it is read from. A key is given either inline (the value of an
// environment variable) or as a file, never both (Validate): the file is
// read, at most 64 KiB, when the key is loaded, and tools such as chctl set
// the same fields without the environment. A
// private key is a PEM "PRIVATE KEY" block (PKCS#8) or the base64 of the raw
// 32-byte seed; a public key is a PEM "PUBLIC KEY" block (PKIX) or the base64 of
// the raw 32 bytes.
type KeyConfig struct {
	// PrivateKey is the private key itself.
	PrivateKey string `env:"AUDIT_SIGNING_KEY"`
	// PrivateKeyFile is a file holding the private key.
	PrivateKeyFile string `env:"AUDIT_SIGNING_KEY_FILE"`
	// PublicKey is the public key itself; when set with a private key it must match.
	PublicKey string `env:"AUDIT_PUBLIC_KEY"`
	// PublicKeyFile is a file holding the public key.
	PublicKeyFile string `env:"AUDIT_PUBLIC_KEY_FILE"`
	// VerifyKeys are the public keys of earlier signing keys (base64, comma
	// separated); VerifyKeysFile holds them as PEM blocks or base64 lines.
	// Both may be set. They only verify: nothing is signed with them.
	VerifyKeys     string `env:"AUDIT_VERIFY_KEYS"`
	VerifyKeysFile string `env:"AUDIT_VERIFY_KEYS_FILE"`
}

// KeyConfigFromEnv reads AUDIT_SIGNING_KEY, AUDIT_SIGNING_KEY_FILE,
// AUDIT_PUBLIC_KEY, AUDIT_PUBLIC_KEY_FILE, AUDIT_VERIFY_KEYS and
// AUDIT_VERIFY_KEYS_FILE through getenv, by the env tags of KeyConfig (a
// configuration struct embedding KeyConfig gets them from envconf.Load).
func KeyConfigFromEnv(getenv func(string) string) KeyConfig {
	var c KeyConfig
	// Only strings: nothing can fail to parse.
	_ = envconf.Load(&c, func(k string) (string, bool) { v := getenv(k); return v, v != "" })
	return c
}

// LoadKeySet returns the keys that verify checkpoints: the current public key
// (AUDIT_PUBLIC_KEY, or the signing key's when current is nil and none is
// configured; current, when not nil, is the signing key in use) and every
// earlier key of AUDIT_VERIFY_KEYS and AUDIT_VERIFY_KEYS_FILE.
func (c KeyConfig) LoadKeySet(current ed25519.PublicKey) (KeySet, error) {
	if err := c.Validate(); err != nil {
		return KeySet{}, err
	}
	var ks KeySet
	if current == nil && (c.HasPrivateKey() || c.PublicKey != "" || c.PublicKeyFile != "") {
		pub, err := c.LoadPublicKey()
		if err != nil {
			return KeySet{}, err
		}
		current = pub
	}
	if current != nil {
		if err := ks.Add(current); err != nil {
			return KeySet{}, err
		}
	}
	for _, src := range []struct{ name, inline, file string }{
		{EnvVerifyKeys, c.VerifyKeys, ""}, {EnvVerifyKeysFile, "", c.VerifyKeysFile},
	} {
		data, err := keyMaterial(src.inline, src.file)
		if err != nil {
			return KeySet{}, fmt.Errorf("audit verify keys (%s): %w", src.name, err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		pubs, err := ParsePublicKeys(data)
		if err != nil {
			return KeySet{}, fmt.Errorf("audit verify keys (%s): %w", src.name, err)
		}
		for _, p := range pubs {
			if err := ks.Add(p); err != nil {
				return KeySet{}, err
			}
		}
	}
	if ks.Len() == 0 {
		return KeySet{}, fmt.Errorf("audit keys: no public key configured (set %s, %s or %s)", EnvSigningKeyFile, EnvVerifyingKeyFile, EnvVerifyKeys)
	}
	return ks, nil
}

// Validate reports a key given twice.
func (c KeyConfig) Validate() error {
	if c.PrivateKey != "" && c.PrivateKeyFile != "" {
		return fmt.Errorf("audit keys: set only one of %s and %s", EnvSigningKey, EnvSigningKeyFile)
	}
	if c.PublicKey != "" && c.PublicKeyFile != "" {
		return fmt.Errorf("audit keys: set only one of %s and %s", EnvVerifyingKey, EnvVerifyingKeyFile)
	}
	return nil
}

// HasPrivateKey reports whether a private key is configured.
func (c KeyConfig) HasPrivateKey() bool { return c.PrivateKey != "" || c.PrivateKeyFile != "" }

// LoadSigner loads the private key and returns its signer. When a public key is
// configured too, it must be the private key's.
func (c KeyConfig) LoadSigner() (*Signer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	data, err := keyMaterial(c.PrivateKey, c.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	if data == nil {
		return nil, fmt.Errorf("audit signing key: set %s or %s", EnvSigningKey, EnvSigningKeyFile)
	}
	priv, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	signer, err := NewSigner(priv)
	if err != nil {
		return nil, err
	}
	if c.PublicKey != "" || c.PublicKeyFile != "" {
		pub, err := c.LoadPublicKey()
		if err != nil {
			return nil, err
		}
		if !pub.Equal(signer.PublicKey()) {
			return nil, fmt.Errorf("audit keys: public key %s is not the signing key's public key %s", KeyID(pub), signer.KeyID())
		}
	}
	return signer, nil
}

// LoadPublicKey loads the configured public key, or derives it from the private
// key when only that is configured.
func (c KeyConfig) LoadPublicKey() (ed25519.PublicKey, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	data, err := keyMaterial(c.PublicKey, c.PublicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("audit public key: %w", err)
	}
	if data == nil {
		if !c.HasPrivateKey() {
			return nil, fmt.Errorf("audit public key: set %s or %s", EnvVerifyingKey, EnvVerifyingKeyFile)
		}
		signer, err := KeyConfig{PrivateKey: c.PrivateKey, PrivateKeyFile: c.PrivateKeyFile}.LoadSigner()
		if err != nil {
			return nil, err
		}
		return signer.PublicKey(), nil
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("audit public key: %w", err)
	}
	return pub, nil
}

// keyMaterial returns inline, or the content of file, or nil when neither is set.
func keyMaterial(inline, file string) ([]byte, error) {
	if inline != "" {
		return []byte(inline), nil
	}
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, maxKeyFileBytes)
	}
	return data, nil
}

// ParsePrivateKey parses an Ed25519 private key from a PEM "PRIVATE KEY" block
// (PKCS#8) or from the standard or URL base64 (padded or not) of the 32-byte seed.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	data = bytes.TrimSpace(data)
	if bytes.HasPrefix(data, []byte("-----BEGIN")) {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, errors.New("malformed PEM")
		}
		if block.Type != pemTypePrivateKey {
			return nil, fmt.Errorf("PEM block is %q, want %q (PKCS#8)", block.Type, pemTypePrivateKey)
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PKCS#8: %w", err)
		}
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 key is %T, want Ed25519", key)
		}
		return priv, nil
	}
	seed, err := decodeBase64(string(data))
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor base64: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("base64 seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ParsePublicKey parses an Ed25519 public key from a PEM "PUBLIC KEY" block
// (PKIX) or from the standard or URL base64 (padded or not) of the raw 32 bytes.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	data = bytes.TrimSpace(data)
	if bytes.HasPrefix(data, []byte("-----BEGIN")) {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, errors.New("malformed PEM")
		}
		if block.Type != pemTypePublicKey {
			return nil, fmt.Errorf("PEM block is %q, want %q (PKIX)", block.Type, pemTypePublicKey)
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PKIX: %w", err)
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PKIX key is %T, want Ed25519", key)
		}
		return pub, nil
	}
	raw, err := decodeBase64(string(data))
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor base64: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("base64 public key is %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// GenerateKey returns a new Ed25519 key pair drawn from rand (crypto/rand.Reader
// in production).
func GenerateKey(rand io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// MarshalPrivateKeyPEM encodes priv as a PEM "PRIVATE KEY" block (PKCS#8).
func MarshalPrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes pub as a PEM "PUBLIC KEY" block (PKIX).
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePublicKey, Bytes: der}), nil
}

// EncodePublicKeyBase64 returns the standard base64 of the raw 32-byte public key.
func EncodePublicKeyBase64(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}
