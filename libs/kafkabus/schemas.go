package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
)

// Headers of a record on the schema registry topic; its key is the
// fingerprint (events.FingerprintHex) and its value the schema document.
const (
	HeaderSchemaTopic   = "schema.topic"
	HeaderSchemaVersion = "schema.version"
)

// SchemaCatalog is what a producer knows of the schemas its messages are
// written with: the codec (events.Codec).
type SchemaCatalog interface {
	SchemaByFingerprint(fp uint64) (events.Schema, bool)
}

// SchemaMessage is the registry record of s.
func SchemaMessage(topic string, s events.Schema) *bus.Message {
	return &bus.Message{
		Topic: topic,
		Key:   events.FingerprintHex(s.Fingerprint),
		Value: s.JSON,
		Headers: map[string]string{
			HeaderSchemaTopic:     s.Topic,
			HeaderSchemaVersion:   strconv.Itoa(s.Version),
			bus.HeaderContentType: "application/json",
		},
	}
}

// ensureSchema writes the schema of an Avro single-object message to the
// registry topic once per producer, and waits for its acknowledgement, before
// the message is handed over: a reader that meets the fingerprint finds the
// schema. Messages that are not Avro, or whose schema the catalog does not
// know (bytes re-published from a dead-letter topic), pass as they are.
func (p *Producer) ensureSchema(ctx context.Context, msg *bus.Message) error {
	if p.schemas == nil || msg.Topic == p.schemaTopic {
		return nil
	}
	fp, err := events.Fingerprint(msg.Value)
	if err != nil {
		return nil
	}
	if _, done := p.registered.Load(fp); done {
		return nil
	}
	s, ok := p.schemas.SchemaByFingerprint(fp)
	if !ok {
		return nil
	}
	p.registering.Lock()
	defer p.registering.Unlock()
	if _, done := p.registered.Load(fp); done {
		return nil
	}
	if err := p.Publish(ctx, SchemaMessage(p.schemaTopic, s)); err != nil {
		return fmt.Errorf("register schema %s v%d (%s) before publishing to %s: %w",
			s.Topic, s.Version, events.FingerprintHex(fp), msg.Topic, err)
	}
	p.registered.Store(fp, true)
	p.logger.Info("schema registered", "topic", p.schemaTopic, "schema_topic", s.Topic,
		"version", s.Version, "fingerprint", events.FingerprintHex(fp))
	return nil
}

// SchemaRegistry reads writer schemas from the registry topic: the
// events.SchemaSource of consumers' codecs. It connects on first use, reads
// the topic to its end, and on a fingerprint it does not know reads what was
// added since before answering; a schema is written before any event that
// uses it, so a reader that has the event finds its schema.
type SchemaRegistry struct {
	conn   Connection
	topic  string
	logger *slog.Logger

	mu       sync.Mutex
	client   sarama.Client
	consumer sarama.Consumer
	next     map[int32]int64 // next offset to read, per partition
	schemas  map[uint64]events.Schema
}

// NewSchemaRegistry returns a registry reader of topic (events.TopicSchemas
// outside tests).
func NewSchemaRegistry(conn Connection, topic string, logger *slog.Logger) *SchemaRegistry {
	return &SchemaRegistry{conn: conn, topic: topic, logger: logger, next: map[int32]int64{}, schemas: map[uint64]events.Schema{}}
}

// LookupSchema implements events.SchemaSource.
func (r *SchemaRegistry) LookupSchema(fp uint64) (events.Schema, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.schemas[fp]; ok {
		return s, nil
	}
	if err := r.refresh(); err != nil {
		return events.Schema{}, fmt.Errorf("read schema registry %s: %w", r.topic, err)
	}
	if s, ok := r.schemas[fp]; ok {
		return s, nil
	}
	return events.Schema{}, fmt.Errorf("%s in %s: %w", events.FingerprintHex(fp), r.topic, events.ErrSchemaNotFound)
}

// refresh reads every partition from where the last read stopped to its
// current end. r.mu is held.
func (r *SchemaRegistry) refresh() error {
	if r.client == nil {
		cfg, err := ClientConfig(r.conn)
		if err != nil {
			return err
		}
		cfg.Consumer.Return.Errors = true
		client, err := sarama.NewClient(r.conn.Brokers, cfg)
		if err != nil {
			return err
		}
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			_ = client.Close()
			return err
		}
		r.client, r.consumer = client, consumer
	}
	if err := r.client.RefreshMetadata(r.topic); err != nil {
		return err
	}
	partitions, err := r.client.Partitions(r.topic)
	if err != nil {
		return err
	}
	for _, part := range partitions {
		end, err := r.client.GetOffset(r.topic, part, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		from, ok := r.next[part]
		if !ok {
			if from, err = r.client.GetOffset(r.topic, part, sarama.OffsetOldest); err != nil {
				return err
			}
		}
		if from >= end {
			r.next[part] = from
			continue
		}
		if err := r.read(part, from, end); err != nil {
			return err
		}
		r.next[part] = end
	}
	return nil
}

func (r *SchemaRegistry) read(part int32, from, end int64) error {
	pc, err := r.consumer.ConsumePartition(r.topic, part, from)
	if err != nil {
		return err
	}
	defer pc.AsyncClose()
	for {
		select {
		case m := <-pc.Messages():
			r.add(m)
			if m.Offset+1 >= end {
				return nil
			}
		case cerr := <-pc.Errors():
			return cerr
		}
	}
}

// add keeps a registry record whose key is the fingerprint of its schema;
// anything else on the topic is logged and ignored.
func (r *SchemaRegistry) add(m *sarama.ConsumerMessage) {
	headers := make(map[string]string, len(m.Headers))
	for _, h := range m.Headers {
		headers[string(h.Key)] = string(h.Value)
	}
	version, _ := strconv.Atoi(headers[HeaderSchemaVersion])
	fp, err := events.SchemaFingerprint(m.Value)
	switch {
	case err != nil:
		err = fmt.Errorf("schema does not parse: %w", err)
	case events.FingerprintHex(fp) != string(m.Key):
		err = fmt.Errorf("keyed %s but its fingerprint is %s", m.Key, events.FingerprintHex(fp))
	case headers[HeaderSchemaTopic] == "" || version < 1:
		err = errors.New("no schema.topic or schema.version header")
	}
	if err != nil {
		r.logger.Warn("schema registry record ignored", "topic", r.topic, "partition", m.Partition, "offset", m.Offset, "error", err)
		return
	}
	r.schemas[fp] = events.Schema{Fingerprint: fp, Topic: headers[HeaderSchemaTopic], Version: version, JSON: m.Value}
}

// Close disconnects the registry reader.
func (r *SchemaRegistry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		return nil
	}
	err := errors.Join(r.consumer.Close(), r.client.Close())
	r.client, r.consumer = nil, nil
	return err
}

// NewCodec returns the fleet's event codec reading, through conn, the writer
// schemas it does not embed from the registry topic. Close the registry when
// the codec is no longer used.
func NewCodec(conn Connection, logger *slog.Logger) (*events.Codec, *SchemaRegistry, error) {
	registry := NewSchemaRegistry(conn, events.TopicSchemas, logger)
	codec, err := events.NewCodecWithConfig(events.CodecConfig{Source: registry})
	if err != nil {
		return nil, nil, err
	}
	return codec, registry, nil
}
