package auditchain_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/envconf"
)

func TestKeyRoundTrips(t *testing.T) {
	t.Parallel()
	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	privPEM, err := auditchain.MarshalPrivateKeyPEM(priv)
	require.NoError(t, err)
	pubPEM, err := auditchain.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	seedB64 := base64.StdEncoding.EncodeToString(priv.Seed())

	privTests := []struct {
		name string
		in   string
	}{
		{name: "PKCS#8 PEM", in: string(privPEM)},
		{name: "base64 seed", in: seedB64},
		{name: "base64 seed with newline", in: seedB64 + "\n"},
		{name: "unpadded URL base64 seed", in: base64.RawURLEncoding.EncodeToString(priv.Seed())},
	}
	for _, tt := range privTests {
		t.Run("private "+tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := auditchain.ParsePrivateKey([]byte(tt.in))
			require.NoError(t, err)
			require.True(t, priv.Equal(got))
		})
	}
	pubTests := []struct {
		name string
		in   string
	}{
		{name: "PKIX PEM", in: string(pubPEM)},
		{name: "base64 raw", in: auditchain.EncodePublicKeyBase64(pub)},
	}
	for _, tt := range pubTests {
		t.Run("public "+tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := auditchain.ParsePublicKey([]byte(tt.in))
			require.NoError(t, err)
			require.True(t, pub.Equal(got))
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	t.Parallel()
	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	privPEM, err := auditchain.MarshalPrivateKeyPEM(priv)
	require.NoError(t, err)
	pubPEM, err := auditchain.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	tests := []struct {
		name    string
		parse   func([]byte) error
		in      string
		wantErr string
	}{
		{name: "private: public PEM", parse: parsePriv, in: string(pubPEM), wantErr: `want "PRIVATE KEY"`},
		{name: "private: short seed", parse: parsePriv, in: base64.StdEncoding.EncodeToString(make([]byte, 31)), wantErr: "seed is 31 bytes"},
		{name: "private: garbage", parse: parsePriv, in: "not a key!", wantErr: "neither PEM nor base64"},
		{name: "private: broken PEM", parse: parsePriv, in: "-----BEGIN PRIVATE KEY-----\nAAAA", wantErr: "malformed PEM"},
		{name: "public: private PEM", parse: parsePub, in: string(privPEM), wantErr: `want "PUBLIC KEY"`},
		{name: "public: 64 bytes", parse: parsePub, in: base64.StdEncoding.EncodeToString(priv), wantErr: "public key is 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorContains(t, tt.parse([]byte(tt.in)), tt.wantErr)
		})
	}
}

func parsePriv(b []byte) error { _, err := auditchain.ParsePrivateKey(b); return err }
func parsePub(b []byte) error  { _, err := auditchain.ParsePublicKey(b); return err }

func TestKeyConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherPub, _, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	privPEM, err := auditchain.MarshalPrivateKeyPEM(priv)
	require.NoError(t, err)
	pubPEM, err := auditchain.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	privFile := filepath.Join(dir, "key.pem")
	pubFile := filepath.Join(dir, "key.pub.pem")
	require.NoError(t, os.WriteFile(privFile, privPEM, 0o600))
	require.NoError(t, os.WriteFile(pubFile, pubPEM, 0o644))
	seedB64 := base64.StdEncoding.EncodeToString(priv.Seed())

	tests := []struct {
		name       string
		env        map[string]string
		wantSigner bool
		wantPub    bool
		wantErr    string
	}{
		{name: "private key file", env: map[string]string{auditchain.EnvSigningKeyFile: privFile}, wantSigner: true, wantPub: true},
		{name: "private key inline with matching public file",
			env:        map[string]string{auditchain.EnvSigningKey: seedB64, auditchain.EnvVerifyingKeyFile: pubFile},
			wantSigner: true, wantPub: true},
		{name: "public key only", env: map[string]string{auditchain.EnvVerifyingKey: auditchain.EncodePublicKeyBase64(pub)}, wantPub: true,
			wantErr: "set AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE"},
		{name: "both inline and file", env: map[string]string{auditchain.EnvSigningKey: seedB64, auditchain.EnvSigningKeyFile: privFile},
			wantErr: "set only one of"},
		{name: "mismatched public key",
			env:     map[string]string{auditchain.EnvSigningKey: seedB64, auditchain.EnvVerifyingKey: auditchain.EncodePublicKeyBase64(otherPub)},
			wantErr: "is not the signing key's public key"},
		{name: "missing file", env: map[string]string{auditchain.EnvSigningKeyFile: filepath.Join(dir, "absent")}, wantErr: "no such file"},
		{name: "nothing configured", env: map[string]string{}, wantErr: "set AUDIT_SIGNING_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := auditchain.KeyConfigFromEnv(func(k string) string { return tt.env[k] })
			signer, err := cfg.LoadSigner()
			if tt.wantSigner {
				require.NoError(t, err)
				require.True(t, pub.Equal(signer.PublicKey()))
				require.Equal(t, auditchain.KeyID(pub), signer.KeyID())
			} else {
				require.ErrorContains(t, err, tt.wantErr)
			}
			if tt.wantPub {
				got, err := cfg.LoadPublicKey()
				require.NoError(t, err)
				require.True(t, pub.Equal(got))
			}
		})
	}
}

func TestKeyIDAndSignature(t *testing.T) {
	t.Parallel()
	s := testSigner(t, "primary")
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{16}$`), s.KeyID())
	require.NotEqual(t, s.KeyID(), testSigner(t, "other").KeyID())

	at := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("X", -7200))
	c := s.Sign(auditchain.Head{Sequence: 42, Hash: auditchain.Hash{1, 2, 3}}, at)
	require.Equal(t, at.UTC().Truncate(time.Microsecond), c.SignedAt)
	require.NoError(t, c.Verify(s.PublicKey()))
	require.Len(t, c.Signature, ed25519.SignatureSize)
	require.Equal(t, append([]byte(auditchain.CheckpointDomain), 0), c.SignedMessage()[:len(auditchain.CheckpointDomain)+1])

	c.Sequence++
	require.ErrorContains(t, c.Verify(s.PublicKey()), "does not verify")
	require.ErrorContains(t, c.Verify(nil), "no valid public key")
}

func TestKeyConfigLoadKeySet(t *testing.T) {
	t.Parallel()
	old1, old2, cur := testSigner(t, "old-1"), testSigner(t, "old-2"), testSigner(t, "current")
	pem2, err := auditchain.MarshalPublicKeyPEM(old2.PublicKey())
	require.NoError(t, err)
	pemCur, err := auditchain.MarshalPublicKeyPEM(cur.PublicKey())
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "verify-keys.pem")
	require.NoError(t, os.WriteFile(file, append(pem2, pemCur...), 0o600))
	env := map[string]string{
		auditchain.EnvSigningKey:     base64.StdEncoding.EncodeToString(testSeed(t, "current")),
		auditchain.EnvVerifyKeys:     auditchain.EncodePublicKeyBase64(old1.PublicKey()),
		auditchain.EnvVerifyKeysFile: file,
	}
	cfg := auditchain.KeyConfigFromEnv(func(k string) string { return env[k] })
	ks, err := cfg.LoadKeySet(nil)
	require.NoError(t, err)
	require.Equal(t, 3, ks.Len())
	for _, s := range []*auditchain.Signer{old1, old2, cur} {
		c := s.Sign(auditchain.Head{Sequence: 1}, baseTime)
		require.NoError(t, ks.VerifyCheckpoint(&c), s.KeyID())
	}
	other := testSigner(t, "other").Sign(auditchain.Head{Sequence: 1}, baseTime)
	require.ErrorContains(t, ks.VerifyCheckpoint(&other), "is not among the verifying keys")

	env[auditchain.EnvVerifyKeys] = "not-a-key"
	_, err = auditchain.KeyConfigFromEnv(func(k string) string { return env[k] }).LoadKeySet(nil)
	require.ErrorContains(t, err, "AUDIT_VERIFY_KEYS")
	_, err = auditchain.KeyConfig{}.LoadKeySet(nil)
	require.ErrorContains(t, err, "no public key configured")
}

func testSeed(t *testing.T, name string) []byte {
	t.Helper()
	seed := sha256.Sum256([]byte("auditchain test key " + name))
	return seed[:]
}

// KeyConfig's env tags name the six key variables, so a service's config
// struct embedding it reads them with envconf.Load.
func TestKeyConfigEnvTags(t *testing.T) {
	t.Parallel()
	keys, err := envconf.Keys(&auditchain.KeyConfig{})
	require.NoError(t, err)
	require.Equal(t, []string{auditchain.EnvVerifyingKey, auditchain.EnvVerifyingKeyFile, auditchain.EnvSigningKey,
		auditchain.EnvSigningKeyFile, auditchain.EnvVerifyKeys, auditchain.EnvVerifyKeysFile}, keys, "sorted")
	var c struct{ Keys auditchain.KeyConfig }
	require.NoError(t, envconf.Load(&c, func(k string) (string, bool) {
		v, ok := map[string]string{auditchain.EnvSigningKeyFile: " /run/secrets/audit.pem "}[k]
		return v, ok
	}))
	require.Equal(t, auditchain.KeyConfig{PrivateKeyFile: "/run/secrets/audit.pem"}, c.Keys)
}
