package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

// wireFormat writes the section that takes one event apart byte by byte.
// The example is encoded by the fleet's codec; each field's bytes are found
// by decoding the body field after field with goavro.
func wireFormat(p *printer) error {
	codec, err := events.NewCodec()
	if err != nil {
		return err
	}
	at := time.Date(2026, time.March, 14, 15, 9, 26, 0, time.UTC)
	ev, err := events.NewEvent(events.AlertResolved{AlertID: "al-1", ComponentID: "kafka", Message: "lag back to normal"},
		events.Meta{Producer: "health-monitor", UserID: "system:health-monitor", CorrelationID: "c-1", Now: func() time.Time { return at }})
	if err != nil {
		return err
	}
	ev.EventID = "0195f2a0-7c1e-7b3a-9c4d-1a2b3c4d5e6f"
	ev.Tags = nil
	b, err := codec.Encode(ev)
	if err != nil {
		return err
	}
	fp, err := events.Fingerprint(b)
	if err != nil {
		return err
	}
	writer, ok := codec.SchemaByFingerprint(fp)
	if !ok {
		return fmt.Errorf("no schema of fingerprint %x", fp)
	}
	root, err := avroschema.Parse(writer.JSON)
	if err != nil {
		return err
	}

	p.line("## Wire format")
	p.line("")
	p.line("Every event is one Kafka record (and one RabbitMQ message) whose value is Avro's")
	p.line("[single-object encoding](https://avro.apache.org/docs/1.12.0/specification/#single-object-encoding):")
	p.line("")
	p.line("1. the marker `C3 01`;")
	p.line("2. the 8-byte CRC-64-AVRO (Rabin) fingerprint of the writer schema's")
	p.line("   [Parsing Canonical Form](https://avro.apache.org/docs/1.12.0/specification/#parsing-canonical-form-for-schemas),")
	p.line("   little-endian: the value of Java's `SchemaNormalization.parsingFingerprint64` and fastavro's")
	p.line("   `fingerprint(..., \"CRC-64-AVRO\")`;")
	p.line("3. the record in Avro binary encoding, fields in schema order.")
	p.line("")
	p.line(fmt.Sprintf("A reader finds the writer schema by that fingerprint: among the schemas it embeds, else on the"))
	p.line(fmt.Sprintf("compacted topic `%s`, where producers write each schema before the first event that uses it.", events.TopicSchemas))
	p.line(fmt.Sprintf("A record there has the fingerprint as its key (the 8 header bytes in hex, e.g. `%s`), the schema", events.FingerprintHex(fp)))
	p.line(fmt.Sprintf("document (`.avsc` JSON) as its value, and the headers `%s` (e.g. `%s`) and `%s` (e.g. `%d`).",
		kafkabus.HeaderSchemaTopic, writer.Topic, kafkabus.HeaderSchemaVersion, writer.Version))
	p.line("The reader then resolves the writer schema to its own version of the topic's schema (Avro schema")
	p.line("resolution: fields it does not know are skipped, fields the writer lacks take their default).")
	p.line("`chctl events tail -topic T` prints records decoded this way; `tools/interop/` reads them with")
	p.line("Apache Avro's Java `BinaryMessageDecoder` and with fastavro.")
	p.line("")
	p.line("Events written before this format was fixed carry goavro's fingerprint, whose canonical form kept")
	p.line("`{\"type\":\"long\"}` where a logical type stood (e.g. `e725bc15bd460d2e` for `system-health` v1")
	p.line("instead of `cd8109e5e733a380`). The fleet's readers still accept those fingerprints for the events already")
	p.line("on the topics (30 to 90 days); other Avro readers cannot resolve them. Nothing writes them any more;")
	p.line("the next release removes them from the readers.")
	p.line("")
	p.line(fmt.Sprintf("### Example: `%s` on `%s`", ev.EventType, ev.Topic()))
	p.line("")
	p.line(fmt.Sprintf("The event, %d bytes:", len(b)))
	p.line("")
	p.line("```")
	for i := 0; i < len(b); i += 16 {
		p.line(fmt.Sprintf("%04x  % x", i, b[i:min(i+16, len(b))]))
	}
	p.line("```")
	p.line("")
	p.line("| offset | bytes | field | type | value |")
	p.line("|---|---|---|---|---|")
	p.line(fmt.Sprintf("| 0 | `%x` | marker | | single-object encoding, version 1 |", b[:2]))
	p.line(fmt.Sprintf("| 2 | `%x` | fingerprint | | 0x%016X, little-endian: `schemas/avro/%s/v%d.avsc` |", b[2:10], fp, writer.Topic, writer.Version))
	rest, offset := b[10:], 10
	for _, f := range root.Fields {
		g, err := goavro.NewCodec(avroschema.CanonicalForm(f.Type))
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		v, after, err := g.NativeFromBinary(rest)
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		n := len(rest) - len(after)
		value, err := json.Marshal(v)
		if err != nil {
			return err
		}
		typ := f.Type.TypeName()
		if f.Type.Kind == avroschema.Union {
			typ = fmt.Sprintf("union of %d", len(f.Type.Branches))
		}
		if f.Type.LogicalType != "" {
			typ += " (" + f.Type.LogicalType + ")"
		}
		p.line(fmt.Sprintf("| %d | `%s` | `%s` | %s | `%s` |", offset, hex.EncodeToString(rest[:n]), f.Name, typ, clean(string(value))))
		rest, offset = after, offset+n
	}
	if len(rest) != 0 {
		return fmt.Errorf("example: %d bytes left after the last field", len(rest))
	}
	p.line("")
	p.line("Ints and longs are zig-zag varints (`0a` is 5), strings a length then UTF-8, a map blocks of")
	p.line("count-prefixed entries ending in `00`, a union the branch index then the value (the `payload` branch")
	p.line("index names the event's record).")
	return nil
}
