package events

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

// Schema is one writer schema as the schema registry topic carries it.
type Schema struct {
	// Fingerprint is the CRC-64-AVRO fingerprint of the Parsing Canonical
	// Form, the one in the single-object header of the events it wrote.
	Fingerprint uint64
	// Topic and Version name it: schemas/avro/<Topic>/v<Version>.avsc.
	Topic   string
	Version int
	// JSON is the schema document, defaults and docs included.
	JSON []byte
}

// FingerprintHex is the fingerprint as the 8 bytes of the single-object
// header, in hex: the key of the schema registry topic.
func FingerprintHex(fp uint64) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(fp >> (8 * i))
	}
	return fmt.Sprintf("%x", b)
}

// ErrSchemaNotFound is wrapped by a SchemaSource that has no schema of a
// fingerprint: the event cannot be decoded, now or later.
var ErrSchemaNotFound = errors.New("schema not found")

// ErrSchemaUnavailable is wrapped by decode errors when the SchemaSource could
// not be asked (a broker down): a transient failure, retried.
var ErrSchemaUnavailable = errors.New("schema source unavailable")

// SchemaSource finds writer schemas by fingerprint (libs/kafkabus reads them
// from the schema registry topic).
type SchemaSource interface {
	// LookupSchema returns the schema of fingerprint fp. Its error wraps
	// ErrSchemaNotFound when there is none; any other error is transient.
	LookupSchema(fp uint64) (Schema, error)
}

// Schemas returns every embedded schema version the codec knows, ordered by
// topic and version: what a producer publishes to the registry topic.
func (c *Codec) Schemas() []Schema {
	out := make([]Schema, 0, len(c.byFP))
	for fp, v := range c.byFP {
		if fp == v.fingerprint {
			out = append(out, v.export())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// SchemaByFingerprint returns the embedded schema of fingerprint fp.
func (c *Codec) SchemaByFingerprint(fp uint64) (Schema, bool) {
	v, ok := c.byFP[fp]
	if !ok || v.fingerprint != fp {
		return Schema{}, false
	}
	return v.export(), true
}

func (v *schemaVersion) export() Schema {
	return Schema{Fingerprint: v.fingerprint, Topic: v.topic, Version: v.version, JSON: v.json}
}

// discover finds the writer schema of fp through the codec's source and
// compiles its resolution to topic's reader schema, once.
func (c *Codec) discover(topic string, tc *topicCodec, fp uint64) (*plan, error) {
	if p, ok := c.discoveredPlan(topic, fp); ok {
		return p, nil
	}
	if v, known := c.byFP[fp]; known {
		return nil, fmt.Errorf("fingerprint %s is schema v%d of topic %s", FingerprintHex(fp), v.version, v.topic)
	}
	if c.source == nil {
		return nil, fmt.Errorf("unknown schema fingerprint %s", FingerprintHex(fp))
	}
	s, err := c.source.LookupSchema(fp)
	switch {
	case errors.Is(err, ErrSchemaNotFound):
		return nil, fmt.Errorf("unknown schema fingerprint %s: %w", FingerprintHex(fp), err)
	case err != nil:
		return nil, fmt.Errorf("look up schema %s: %w: %w", FingerprintHex(fp), ErrSchemaUnavailable, err)
	}
	v, err := parseVersion(s.Topic, s.Version, s.JSON)
	if err != nil {
		return nil, fmt.Errorf("schema %s from the registry: %w", FingerprintHex(fp), err)
	}
	if v.fingerprint != fp {
		return nil, fmt.Errorf("schema registered as %s has fingerprint %s", FingerprintHex(fp), FingerprintHex(v.fingerprint))
	}
	fn, err := newProjector().compile(v.schema, tc.reader.schema, "")
	if err != nil {
		return nil, fmt.Errorf("%s v%d (%s) cannot be read as v%d: %w", s.Topic, s.Version, FingerprintHex(fp), tc.reader.version, err)
	}
	p := &plan{writer: v, project: fn}
	c.mu.Lock()
	c.discovered[discoveredKey{topic, fp}] = p
	c.mu.Unlock()
	return p, nil
}

// DecodeFailure classifies an error of Decode for a bus handler: permanent
// (bytes that no known or discoverable schema reads: dead-letter them),
// except when the schema source could not be asked, which is retried.
func DecodeFailure(err error) error {
	if err == nil || errors.Is(err, ErrSchemaUnavailable) {
		return err
	}
	return bus.Permanent(err)
}

// SchemaFingerprint parses a schema document and returns its fingerprint.
func SchemaFingerprint(src []byte) (uint64, error) {
	s, err := avroschema.Parse(src)
	if err != nil {
		return 0, err
	}
	return avroschema.Fingerprint64(s), nil
}

func (c *Codec) discoveredPlan(topic string, fp uint64) (*plan, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.discovered[discoveredKey{topic, fp}]
	return p, ok
}
