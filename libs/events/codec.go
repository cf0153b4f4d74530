package events

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"sync"

	"github.com/linkedin/goavro/v2"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
	"github.com/cosmic-horizons/fleet/schemas"
)

// Avro single-object encoding: a two-byte marker, the 8-byte little-endian
// CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical
// Form, then the Avro binary body (docs/events.md shows one byte by byte).
const (
	magic0     = 0xC3
	magic1     = 0x01
	headerSize = 10
)

// DefaultMaxMessageSize bounds the encoded size Decode accepts.
const DefaultMaxMessageSize = 1 << 20

// ContentType is the content-type header value of encoded events.
const ContentType = bus.ContentTypeAvro

// CodecConfig selects the schemas a Codec uses. The zero value uses the
// embedded schemas of the schemas module with the latest version of each
// topic as both writer and reader.
type CodecConfig struct {
	// Schemas is a tree laid out like the schemas module (avro/<topic>/vN.avsc);
	// nil means the embedded schemas.
	Schemas fs.FS
	// WriterVersions pins the version Encode writes per topic; absent means latest.
	WriterVersions map[string]int
	// ReaderVersions pins the version Decode resolves to per topic; absent means latest.
	ReaderVersions map[string]int
	// MaxMessageSize bounds the size Decode accepts; 0 means DefaultMaxMessageSize.
	MaxMessageSize int
	// Source finds the writer schemas of fingerprints the codec does not
	// embed (events of a newer producer); nil means none are found.
	Source SchemaSource
}

// Validate reports the first thing wrong with cfg.
func (cfg CodecConfig) Validate() error {
	if cfg.MaxMessageSize < 0 {
		return fmt.Errorf("codec config: max message size %d < 0", cfg.MaxMessageSize)
	}
	return nil
}

// schemaVersion is one writer schema: a version of a topic's schema, embedded
// or discovered through a SchemaSource.
type schemaVersion struct {
	topic   string
	version int
	json    []byte
	schema  *avroschema.Schema
	goavro  *goavro.Codec
	// fingerprint is the CRC-64-AVRO fingerprint of the Parsing Canonical Form.
	fingerprint uint64
	header      [headerSize]byte
}

func parseVersion(topic string, version int, src []byte) (*schemaVersion, error) {
	s, err := avroschema.Parse(src)
	if err != nil {
		return nil, err
	}
	g, err := goavro.NewCodec(string(src))
	if err != nil {
		return nil, err
	}
	v := &schemaVersion{topic: topic, version: version, json: src, schema: s, goavro: g, fingerprint: avroschema.Fingerprint64(s)}
	v.header[0], v.header[1] = magic0, magic1
	binary.LittleEndian.PutUint64(v.header[2:], v.fingerprint)
	return v, nil
}

// plan reads the data of one writer schema as a topic's reader schema.
type plan struct {
	writer  *schemaVersion
	project projectFn
}

type topicCodec struct {
	writer *schemaVersion
	reader *schemaVersion
	// plans hold the embedded writer versions by fingerprint; a version is
	// also found by its legacy fingerprint (see legacyFingerprint).
	plans map[uint64]*plan
}

// Codec encodes events to and decodes them from Avro single-object encoding.
// goavro reads and writes the Avro binary; the codec adds the header, the
// resolution of older and newer writer schemas to the reader's, and the
// conversion to Go types. It is built once (parsing every schema version and
// compiling every writer-to-reader resolution) and is safe for concurrent
// use. Writer schemas it does not embed are found through its SchemaSource,
// compiled on first use and kept.
type Codec struct {
	topics  map[string]*topicCodec
	byFP    map[uint64]*schemaVersion
	binder  *binder
	maxSize int
	source  SchemaSource

	mu         sync.RWMutex
	discovered map[discoveredKey]*plan
}

type discoveredKey struct {
	topic       string
	fingerprint uint64
}

// goavroLimits bounds what goavro allocates for a block before reading it:
// an array, map or string cannot have more items or bytes than the largest
// message has bytes.
var goavroLimits sync.Once

// NewCodec builds a codec over the embedded schemas, writing and reading
// the latest version of every topic.
func NewCodec() (*Codec, error) { return NewCodecWithConfig(CodecConfig{}) }

// NewCodecWithConfig builds a codec as cfg says.
func NewCodecWithConfig(cfg CodecConfig) (*Codec, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	goavroLimits.Do(func() {
		goavro.MaxBlockCount = DefaultMaxMessageSize
		goavro.MaxBlockSize = DefaultMaxMessageSize
	})
	fsys := cfg.Schemas
	if fsys == nil {
		fsys = schemas.FS()
	}
	c := &Codec{
		topics:     map[string]*topicCodec{},
		byFP:       map[uint64]*schemaVersion{},
		binder:     newBinder(),
		maxSize:    cfg.MaxMessageSize,
		source:     cfg.Source,
		discovered: map[discoveredKey]*plan{},
	}
	if c.maxSize == 0 {
		c.maxSize = DefaultMaxMessageSize
	}
	topics, err := schemas.TopicsIn(fsys)
	if err != nil {
		return nil, fmt.Errorf("new codec: %w", err)
	}
	for _, topic := range topics {
		if err := c.addTopic(fsys, topic, cfg.WriterVersions[topic], cfg.ReaderVersions[topic]); err != nil {
			return nil, fmt.Errorf("new codec: %w", err)
		}
	}
	return c, nil
}

func pick(versions []*schemaVersion, want int, role string) (*schemaVersion, error) {
	if want == 0 {
		return versions[len(versions)-1], nil
	}
	if want < 1 || want > len(versions) {
		return nil, fmt.Errorf("%s version %d of %s does not exist", role, want, versions[0].topic)
	}
	return versions[want-1], nil
}

func (c *Codec) addTopic(fsys fs.FS, topic string, writerVersion, readerVersion int) error {
	files, err := schemas.VersionsIn(fsys, topic)
	if err != nil {
		return err
	}
	versions := make([]*schemaVersion, 0, len(files))
	for _, f := range files {
		v, err := parseVersion(topic, f.Version, f.Schema)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if other, dup := c.byFP[v.fingerprint]; dup {
			return fmt.Errorf("%s: same canonical schema as %s v%d", f.Path, other.topic, other.version)
		}
		c.byFP[v.fingerprint] = v
		versions = append(versions, v)
	}
	tc := &topicCodec{plans: map[uint64]*plan{}}
	if tc.writer, err = pick(versions, writerVersion, "writer"); err != nil {
		return err
	}
	if tc.reader, err = pick(versions, readerVersion, "reader"); err != nil {
		return err
	}
	if err := checkPayloadTypes(tc.reader.schema); err != nil {
		return fmt.Errorf("%s v%d: %w", topic, tc.reader.version, err)
	}
	proj := newProjector()
	for _, v := range versions {
		fn, err := proj.compile(v.schema, tc.reader.schema, "")
		if err != nil {
			return fmt.Errorf("%s: v%d cannot be read as v%d: %w", topic, v.version, tc.reader.version, err)
		}
		p := &plan{writer: v, project: fn}
		tc.plans[v.fingerprint] = p
		if legacy := legacyFingerprint(v); legacy != v.fingerprint {
			tc.plans[legacy] = p
			c.byFP[legacy] = v
		}
	}
	c.topics[topic] = tc
	return nil
}

// legacyFingerprint is the fingerprint that releases before the
// specification's canonical form wrote: goavro's Rabin, whose canonical form
// keeps {"type":"long"} where a logical type was. Readers accept it for the
// events already on the topics; no writer uses it (docs/events.md).
func legacyFingerprint(v *schemaVersion) uint64 { return v.goavro.Rabin }

// checkPayloadTypes makes sure every payload branch of s has a Go type.
func checkPayloadTypes(s *avroschema.Schema) error {
	f := s.Field("payload")
	if f == nil || f.Type.Kind != avroschema.Union {
		return errors.New("schema has no payload union")
	}
	known := map[string]bool{}
	for _, p := range PayloadTypes() {
		known[reflect.TypeOf(p).Name()] = true
	}
	for _, b := range f.Type.Branches {
		if b.Kind != avroschema.Record || !known[b.ShortName()] {
			return fmt.Errorf("payload branch %s has no Go type", b.TypeName())
		}
	}
	return nil
}

// WriterVersion returns the schema version Encode writes for topic.
func (c *Codec) WriterVersion(topic string) (int, bool) {
	tc, ok := c.topics[topic]
	if !ok {
		return 0, false
	}
	return tc.writer.version, true
}

// Encode validates ev and writes it in single-object encoding with the
// writer schema of its topic. The envelope's schema_version is written as
// the version actually used, whatever ev carries.
func (c *Codec) Encode(ev Event) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("encode %s: panic: %v", ev.EventType, r)
		}
	}()
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	topic := ev.Topic()
	tc, ok := c.topics[topic]
	if !ok {
		return nil, fmt.Errorf("encode %s: no schema for topic %s", ev.EventType, topic)
	}
	ev.SchemaVersion = int32(tc.writer.version)
	native, err := c.binder.toNative(tc.writer.schema, reflect.ValueOf(ev), "")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ev.EventType, err)
	}
	buf := make([]byte, headerSize, 256)
	copy(buf, tc.writer.header[:])
	buf, err = tc.writer.goavro.BinaryFromNative(buf, native)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ev.EventType, err)
	}
	return buf, nil
}

// Decode reads an event of topic from single-object encoding, resolving
// the writer's schema (found by fingerprint) to the codec's reader schema,
// and validates it. Malformed input yields an error, never a panic.
func (c *Codec) Decode(topic string, b []byte) (ev Event, err error) {
	native, reader, err := c.decodeNative(topic, b)
	if err != nil {
		return Event{}, err
	}
	defer func() {
		if r := recover(); r != nil {
			ev, err = Event{}, fmt.Errorf("decode %s: panic: %v", topic, r)
		}
	}()
	if err := c.binder.fromNative(reader, native, reflect.ValueOf(&ev).Elem(), ""); err != nil {
		return Event{}, fmt.Errorf("decode %s: %w", topic, err)
	}
	if err := ev.Validate(); err != nil {
		return Event{}, fmt.Errorf("decode %s: %w", topic, err)
	}
	if ev.Topic() != topic {
		return Event{}, fmt.Errorf("decode %s: payload %s belongs to topic %s", topic, ev.EventType, ev.Topic())
	}
	return ev, nil
}

// DecodeNative is Decode without the conversion to Go types: the event as
// goavro-style native values shaped by the reader schema, e.g. for tools
// that print events or for fields the Go types do not carry yet.
func (c *Codec) DecodeNative(topic string, b []byte) (map[string]any, error) {
	native, _, err := c.decodeNative(topic, b)
	return native, err
}

// Fingerprint returns the writer fingerprint of an encoded event.
func Fingerprint(b []byte) (uint64, error) {
	if len(b) < headerSize {
		return 0, fmt.Errorf("message of %d bytes is shorter than the %d-byte header", len(b), headerSize)
	}
	if b[0] != magic0 || b[1] != magic1 {
		return 0, fmt.Errorf("not Avro single-object encoding: marker %#x %#x", b[0], b[1])
	}
	return binary.LittleEndian.Uint64(b[2:headerSize]), nil
}

func (c *Codec) decodeNative(topic string, b []byte) (native map[string]any, reader *avroschema.Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			native, reader, err = nil, nil, fmt.Errorf("decode %s: panic: %v", topic, r)
		}
	}()
	if len(b) > c.maxSize {
		return nil, nil, fmt.Errorf("decode %s: message of %d bytes exceeds the limit of %d", topic, len(b), c.maxSize)
	}
	fp, err := Fingerprint(b)
	if err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", topic, err)
	}
	tc, ok := c.topics[topic]
	if !ok {
		return nil, nil, fmt.Errorf("decode: unknown topic %q", topic)
	}
	p, ok := tc.plans[fp]
	if !ok {
		if p, err = c.discover(topic, tc, fp); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", topic, err)
		}
	}
	v, rest, err := p.writer.goavro.NativeFromBinary(b[headerSize:])
	if err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", topic, err)
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("decode %s: %d trailing bytes", topic, len(rest))
	}
	if v, err = apply(p.project, v); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", topic, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("decode %s: top level is %T, not a record", topic, v)
	}
	return m, tc.reader.schema, nil
}

// DecodeJSON is Decode to Avro's JSON encoding of the event, as the
// specification defines it (unions as {"branch": value}), shaped by the
// reader schema of topic: what operators' tools print. It also names the
// writer schema the bytes were read with.
func (c *Codec) DecodeJSON(topic string, b []byte) (text []byte, writer Schema, err error) {
	if src, ok := sourceOfDLQ(topic); ok {
		topic = src
	}
	native, _, err := c.decodeNative(topic, b)
	if err != nil {
		return nil, Schema{}, err
	}
	fp, _ := Fingerprint(b)
	tc := c.topics[topic]
	if p, ok := tc.plans[fp]; ok {
		writer = p.writer.export()
	} else if p, ok := c.discoveredPlan(topic, fp); ok {
		writer = p.writer.export()
	}
	text, err = tc.reader.goavro.TextualFromNative(nil, native)
	if err != nil {
		return nil, Schema{}, fmt.Errorf("decode %s: to JSON: %w", topic, err)
	}
	return text, writer, nil
}
