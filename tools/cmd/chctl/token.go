package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// envAuthSecret is the orchestrator's HS256 secret variable; chctl token
// reads it when -secret is not given.
const envAuthSecret = "AUTH_HS256_SECRET"

const tokenUsage = `usage:
  chctl token [-secret S] -user U [-admin] [-ttl 24h]
      print an HS256 JWT for user U signed with the shared secret S (default
      $` + envAuthSecret + `). DEVELOPMENT ONLY: whoever holds the secret can act
      as any user; production tokens come from the identity provider (RS256, JWKS).`

func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, tokenUsage) }
	secret := fs.String("secret", os.Getenv(envAuthSecret), "the orchestrator's HS256 secret (default $"+envAuthSecret+")")
	user := fs.String("user", "", "the token's subject (the user id)")
	admin := fs.Bool("admin", false, "add role admin (sees and cancels every user's jobs)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("token: unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case strings.TrimSpace(*user) == "":
		return usageError{"token: -user is required"}
	case len(*secret) < 32:
		return usageError{"token: the secret (-secret or $" + envAuthSecret + ") must have at least 32 bytes"}
	case *ttl <= 0:
		return usageError{"token: -ttl must be positive"}
	}
	tok, err := mintHS256(*secret, *user, *admin, time.Now(), *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// mintHS256 returns a compact HS256 JWT with sub, iat, exp and, for an
// admin, role "admin".
func mintHS256(secret, user string, admin bool, now time.Time, ttl time.Duration) (string, error) {
	claims := map[string]any{"sub": user, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if admin {
		claims["role"] = "admin"
	}
	header, err := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil)), nil
}
