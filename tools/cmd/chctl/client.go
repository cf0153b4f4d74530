package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// envToken is the bearer JWT every command that calls a service sends.
const envToken = "FLEET_TOKEN"

// serviceFlags are the -addr and -token flags of a command that calls one
// fleet service over gRPC.
type serviceFlags struct {
	addr  *string
	token *string
}

// addServiceFlags adds -addr (default $envAddr, else defaultAddr) and -token
// (default $FLEET_TOKEN) to fs.
func addServiceFlags(fs *flag.FlagSet, service, envAddr, defaultAddr string) serviceFlags {
	addr := os.Getenv(envAddr)
	if addr == "" {
		addr = defaultAddr
	}
	return serviceFlags{
		addr:  fs.String("addr", addr, service+" gRPC address (default $"+envAddr+" or "+defaultAddr+")"),
		token: fs.String("token", os.Getenv(envToken), "bearer JWT (default $"+envToken+")"),
	}
}

// dial connects to the service; the returned context carries the token.
// A missing token is a usage error: every fleet service refuses anonymous calls.
func (c serviceFlags) dial(ctx context.Context) (context.Context, *grpc.ClientConn, error) {
	token := strings.TrimSpace(*c.token)
	if token == "" {
		return nil, nil, usageError{"no token: set -token or $" + envToken + ` (development: export ` + envToken + `=$(chctl token -secret S -user U))`}
	}
	conn, err := grpc.NewClient(*c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", *c.addr, err)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), conn, nil
}
