package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

const eventsUsage = `usage:
  chctl events tail -topic TOPIC [-n N] [-from-beginning] [-follow] [-brokers host:port,...]
      print the records of TOPIC (an event topic, its .dlq, or ` + events.TopicSchemas + `) as one JSON
      object per line: topic, partition, offset, timestamp, key, headers, the writer
      schema (topic, version, fingerprint) and the event in Avro's JSON encoding,
      resolved to this release's schema. The writer schema is found by the fingerprint
      in the record's header, in the schema registry topic when this release does not
      embed it. A record that does not decode is printed with "error" and its bytes
      in base64 ("value_base64"); the command goes on.
      By default the last N records (default 10) of every partition; -from-beginning
      starts at the oldest and stops after N records in all (0: no limit); -follow
      keeps printing new records until interrupted. A topic named PREFIX<topic> (the
      orchestrator's ORCHESTRATOR_TOPIC_PREFIX) or <topic>.dlq reads with <topic>'s schema.

-brokers defaults to $KAFKA_BROKERS; TLS comes from $KAFKA_TLS_*.`

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" {
		fmt.Fprintln(stdout, eventsUsage)
		return nil
	}
	if args[0] != "tail" {
		return usageError{fmt.Sprintf("events: unknown subcommand %q\n%s", args[0], eventsUsage)}
	}
	fs := flag.NewFlagSet("events tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := kafkabus.ConnectionFromEnv()
	brokers := fs.String("brokers", strings.Join(conn.Brokers, ","), "Kafka bootstrap addresses (default $KAFKA_BROKERS)")
	topic := fs.String("topic", "", "the topic to read, e.g. job-lifecycle")
	n := fs.Int("n", 10, "the last N records of each partition; with -from-beginning, at most N records (0: all)")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest record of each partition")
	follow := fs.Bool("follow", false, "keep printing new records until interrupted")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	conn = withBrokers(conn, *brokers)
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("events tail: unexpected argument %q", fs.Arg(0))}
	case *topic == "":
		return usageError{"events tail: -topic is required, e.g. -topic job-lifecycle"}
	case *n < 0:
		return usageError{fmt.Sprintf("events tail: -n %d is negative", *n)}
	case len(conn.Brokers) == 0:
		return usageError{"events tail: no Kafka brokers: set KAFKA_BROKERS or -brokers"}
	}
	if err := conn.Validate(); err != nil {
		return usageError{"events tail: " + err.Error()}
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	codec, registry, err := kafkabus.NewCodec(conn, logger)
	if err != nil {
		return err
	}
	defer registry.Close()
	r, err := openTopic(conn, *topic, stderr)
	if err != nil {
		return err
	}
	defer r.Close()

	printer := eventPrinter{codec: codec, out: json.NewEncoder(stdout), topic: *topic, schemaTopic: schemaTopicOf(*topic)}
	limit := 0
	starts := make(map[int32]int64, len(r.partitions))
	for _, p := range r.partitions {
		starts[p] = r.oldest[p]
		if !*fromBeginning {
			starts[p] = max(r.oldest[p], r.hwm[p]-int64(*n))
		}
	}
	if *fromBeginning {
		limit = *n
	}
	printed := 0
	emit := func(m *sarama.ConsumerMessage) error {
		if err := printer.print(m); err != nil {
			return err
		}
		printed++
		if limit > 0 && printed >= limit {
			return errStopReading
		}
		return nil
	}
	if *follow {
		err = r.follow(ctx, starts, emit)
	} else {
		for _, p := range r.partitions {
			if err = r.read(ctx, p, starts[p], emit); err != nil {
				break
			}
		}
	}
	if errors.Is(err, errStopReading) || (*follow && errors.Is(err, context.Canceled)) {
		err = nil
	}
	return err
}

// follow hands fn the messages of every partition from starts on, as they
// arrive, until ctx ends or fn fails.
func (r *topicReader) follow(ctx context.Context, starts map[int32]int64, fn func(*sarama.ConsumerMessage) error) error {
	merged := make(chan *sarama.ConsumerMessage)
	for _, p := range r.partitions {
		pc, err := r.consumer.ConsumePartition(r.topic, p, starts[p])
		if err != nil {
			return fmt.Errorf("read %s partition %d from offset %d: %w", r.topic, p, starts[p], err)
		}
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				select {
				case merged <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
		go func() {
			for err := range pc.Errors() {
				fmt.Fprintf(r.stderr, "warning: reading %s partition %d: %v\n", r.topic, p, err)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case m := <-merged:
			if err := fn(m); err != nil {
				return err
			}
		}
	}
}

// schemaTopicOf names the catalogue topic whose schema the records of topic
// are written with: topic itself, or the catalogue topic it ends with.
func schemaTopicOf(topic string) string {
	topic = strings.TrimSuffix(topic, events.DLQSuffix)
	for _, t := range []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicNotifications, events.TopicAuditTrail, events.TopicSystemHealth} {
		if strings.HasSuffix(topic, t) {
			return t
		}
	}
	return topic
}

// eventPrinter writes one JSON line per record.
type eventPrinter struct {
	codec       *events.Codec
	out         *json.Encoder
	topic       string
	schemaTopic string
}

type printedRecord struct {
	Topic       string            `json:"topic"`
	Partition   int32             `json:"partition"`
	Offset      int64             `json:"offset"`
	Timestamp   time.Time         `json:"timestamp"`
	Key         string            `json:"key,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Schema      *printedSchema    `json:"schema,omitempty"`
	Event       json.RawMessage   `json:"event,omitempty"`
	Error       string            `json:"error,omitempty"`
	ValueBase64 string            `json:"value_base64,omitempty"`
}

type printedSchema struct {
	Topic       string `json:"topic"`
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
}

func (p eventPrinter) print(m *sarama.ConsumerMessage) error {
	rec := printedRecord{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp.UTC(), Key: string(m.Key)}
	if len(m.Headers) > 0 {
		rec.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			rec.Headers[string(h.Key)] = string(h.Value)
		}
	}
	if p.topic == events.TopicSchemas {
		// The registry's records are schema documents, printed as they are.
		var doc json.RawMessage
		if err := json.Unmarshal(m.Value, &doc); err != nil {
			rec.Error, rec.ValueBase64 = "not JSON: "+err.Error(), base64.StdEncoding.EncodeToString(m.Value)
		} else {
			rec.Event = doc
		}
		return p.out.Encode(rec)
	}
	text, writer, err := p.codec.DecodeJSON(p.schemaTopic, m.Value)
	if err != nil {
		rec.Error, rec.ValueBase64 = err.Error(), base64.StdEncoding.EncodeToString(m.Value)
		return p.out.Encode(rec)
	}
	rec.Event = text
	rec.Schema = &printedSchema{Topic: writer.Topic, Version: writer.Version, Fingerprint: events.FingerprintHex(writer.Fingerprint)}
	return p.out.Encode(rec)
}
