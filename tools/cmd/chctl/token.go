package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auth"
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
	tok, err := auth.NewHS256Token(*secret, *user, *admin, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
