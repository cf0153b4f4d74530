package events

import "testing"

// TestSameVersionDecodesWithoutProjection: bytes written with the reader's
// own schema need no resolution, unions included (the payload union, the
// optional fields), so decoding uses goavro's value as it is instead of
// copying every record and union.
func TestSameVersionDecodesWithoutProjection(t *testing.T) {
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	for topic, tc := range c.topics {
		p, ok := tc.plans[tc.reader.fingerprint]
		if !ok {
			t.Fatalf("%s: no plan for the reader's own version", topic)
		}
		if p.project != nil {
			t.Errorf("%s v%d: reading its own bytes compiles a projection", topic, tc.reader.version)
		}
	}
}
