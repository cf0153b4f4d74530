// Command chctl is the operator and user command line of the fleet.
//
// Usage:
//
//	chctl topics [-apply | -check] [-brokers host:port,...]
//	    create the topics of the catalogue that are missing and verify the
//	    others; -apply also fixes retention, compression and min.insync.replicas
//	    of existing topics; -check changes nothing and reports missing topics.
//	    Exits 1 when a topic is missing (-check) or differs from its spec.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case err == nil:
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "chctl:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "chctl:", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageText = `chctl: the Cosmic Horizons Fleet command line

Commands:
  topics    create missing topics of the catalogue and verify existing ones
  audit     export the audit trail (export), verify an export offline (verify),
            make a checkpoint key pair (keygen)
  jobs      submit, get, list, cancel and watch jobs, read their output and
            download their files (chctl jobs help)
  token     mint an HS256 development token (development only)
  notify    subscribe to job emails (notify subscribe)
  dlq       list a dead-letter topic or replay it to the original topics (chctl dlq help)
  events    print a topic's records decoded to JSON (chctl events help)

Run "chctl COMMAND -h" for the flags of a command.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, usageText)
		return nil
	}
	switch args[0] {
	case "topics":
		return runTopics(ctx, args[1:], stdout, stderr)
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr)
	case "jobs":
		return runJobs(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "notify":
		return runNotify(ctx, args[1:], stdout, stderr)
	case "dlq":
		return runDLQ(ctx, args[1:], stdout, stderr)
	case "events":
		return runEvents(ctx, args[1:], stdout, stderr)
	default:
		return usageError{fmt.Sprintf("unknown command %q (see chctl help)", args[0])}
	}
}

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := kafkabus.ConnectionFromEnv()
	brokers := fs.String("brokers", strings.Join(conn.Brokers, ","), "Kafka bootstrap addresses (default $KAFKA_BROKERS)")
	apply := fs.Bool("apply", false, "alter retention, compression and min.insync.replicas of existing topics to match the catalogue")
	check := fs.Bool("check", false, "change nothing: report missing and differing topics only")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *brokers == "" {
		return usageError{"no Kafka brokers: set KAFKA_BROKERS or -brokers"}
	}
	if *apply && *check {
		return usageError{"topics: -apply and -check exclude each other"}
	}
	cfg, err := events.CatalogueConfigFromEnv()
	if err != nil {
		return usageError{err.Error()}
	}
	specs, err := events.Catalogue(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	report, err := kafkabus.EnsureTopics(ctx, strings.Split(*brokers, ","), specs, logger,
		kafkabus.EnsureOptions{Apply: *apply, VerifyOnly: *check, TLS: conn.TLS, ClientID: "chctl"})
	if s := report.String(); s != "" {
		fmt.Fprintln(stdout, s)
	}
	if err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	return nil
}

// withBrokers is conn with the comma-separated -brokers flag as its brokers,
// named chctl unless KAFKA_CLIENT_ID says otherwise.
func withBrokers(conn kafkabus.Connection, brokers string) kafkabus.Connection {
	conn.Brokers = nil
	for b := range strings.SplitSeq(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			conn.Brokers = append(conn.Brokers, b)
		}
	}
	if conn.ClientID == "" {
		conn.ClientID = "chctl"
	}
	return conn
}
