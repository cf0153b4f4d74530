package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
)

// Outbox runs the operator's outbox command against the orchestrator's
// database (DATABASE_URL, or the state directory's SQLite file), alongside
// a running service:
//
//	job-orchestrator outbox list                  the parked events: leg, job, sequence, attempts, error
//	job-orchestrator outbox retry EVENT_ID...     unpark these events (the relay publishes them again)
//	job-orchestrator outbox retry -all            unpark every parked event
func Outbox(ctx context.Context, lookup svcruntime.LookupFunc, args []string, out io.Writer) error {
	cfg, err := LoadConfig(lookup)
	if err != nil {
		return err
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "retry") {
		return fmt.Errorf("outbox: want \"list\", \"retry EVENT_ID...\" or \"retry -all\"")
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	codec, err := events.NewCodec()
	if err != nil {
		return err
	}
	st, err := store.New(db, codec, store.Config{})
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return fmt.Errorf("outbox list: unexpected arguments %q", args[1:])
		}
		parked, err := st.ListParked(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "EVENT ID\tLEG\tTYPE\tJOB\tSEQ\tATTEMPTS\tPARKED AT\tERROR")
		for _, p := range parked {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.EventID, p.Leg, p.EventType, p.JobID, p.Seq, p.Attempts,
				p.ParkedAt.Format(time.RFC3339), p.LastError)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d parked\n", len(parked))
		return nil
	default:
		ids := args[1:]
		switch {
		case len(ids) == 0:
			return fmt.Errorf("outbox retry: name the event ids, or -all")
		case len(ids) == 1 && ids[0] == "-all":
			ids = nil
		}
		n, err := st.RetryParked(ctx, ids...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%d unparked; the relay publishes them again\n", n)
		return nil
	}
}
