package adapters

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDetailsJSONIsEncodingJSON: the stored details text is byte for byte
// what encoding/json writes (sorted keys, HTML escaping off), for plain
// values and for every kind of string that needs escaping.
func TestDetailsJSONIsEncodingJSON(t *testing.T) {
	values := []string{
		"", "plain", "with space", "job.submit", "a\"quote", `back\slash`, "new\nline", "tab\t", "\r", "\x00nul", "\x1fus",
		"\x7fdel", "<b>&amp;</b>", "ünïcödé", "日本語", "\u2028line\u2029para", "bad\xffutf8", "\xc3", "emoji 🚀",
		strings.Repeat("x", 5000), "/slash", "'single'",
	}
	cases := []map[string]string{nil, {}}
	for i, v := range values {
		cases = append(cases, map[string]string{"k": v}, map[string]string{v: "v", "after." + v: v, "z": values[(i+1)%len(values)]})
	}
	all := map[string]string{}
	for i, v := range values {
		all[v+string(rune('a'+i))] = v
	}
	cases = append(cases, all)
	for _, d := range cases {
		want := "{}"
		if len(d) > 0 {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(d); err != nil {
				t.Fatal(err)
			}
			want = strings.TrimSuffix(b.String(), "\n")
		}
		got, err := detailsJSON(d)
		if err != nil {
			t.Fatalf("detailsJSON(%q): %v", d, err)
		}
		if got != want {
			t.Errorf("detailsJSON(%q)\n got %s\nwant %s", d, got, want)
		}
	}
}
