package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
)

const (
	envNotifyAddr     = "FLEET_NOTIFY_ADDR"
	defaultNotifyAddr = "127.0.0.1:50053"
)

const notifyUsage = `usage:
  chctl notify subscribe -email ADDR [-events job.completed,job.failed] [-job ID]
      ask for an email to ADDR when one of your jobs (or job ID) reaches one of
      the event types; you are the subject of the token (-token or $` + envToken + `).
      -addr HOST:PORT (default $` + envNotifyAddr + ` or ` + defaultNotifyAddr + `).`

func runNotify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "subscribe" {
		fmt.Fprintln(stdout, notifyUsage)
		if len(args) == 0 || (args[0] != "-h" && args[0] != "help") {
			return usageError{"notify: want the subcommand subscribe"}
		}
		return nil
	}
	fs := flag.NewFlagSet("notify subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addServiceFlags(fs, "notification-consumer", envNotifyAddr, defaultNotifyAddr)
	email := fs.String("email", "", "the address to send to")
	evs := fs.String("events", "job.completed,job.failed,job.cancelled", "comma-separated event types")
	job := fs.String("job", "", "one job only (default: every job of the user)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *email == "" {
		return usageError{"notify subscribe: -email is required"}
	}
	var types []string
	for e := range strings.SplitSeq(*evs, ",") {
		if e = strings.TrimSpace(e); e != "" {
			types = append(types, e)
		}
	}
	ctx, conn, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := notificationpb.NewNotificationServiceClient(conn).CreateSubscription(ctx, &notificationpb.CreateSubscriptionRequest{
		JobId: *job, Channel: notificationpb.Channel_CHANNEL_EMAIL, Target: *email, EventTypes: types,
	})
	if err != nil {
		return callError("subscribe", err)
	}
	sub := resp.GetSubscription()
	fmt.Fprintf(stdout, "subscription %s: %s to %s on %s\n", sub.GetId(), sub.GetUserId(), *email, strings.Join(types, ", "))
	return nil
}
