package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseBenchLinesAndReport(t *testing.T) {
	out := `goos: linux
BenchmarkAppend/sqlite-2         	  100000	    128440 ns/op	        14.93 %-of-peer	      7786 appends/s	        40.00 cpu-us/event	     52150 peer-inbox-events/s	        10.00 peer-cpu-us/event
BenchmarkAppend/postgres-2       	  100000	    428930 ns/op	        31.27 %-of-peer	      2331 appends/s	      7457 peer-inbox-events/s
PASS
ok  	x	12.0s
`
	lines, err := parseBenchLines(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || database(lines[0].name) != "sqlite" || database(lines[1].name) != "postgres" {
		t.Fatalf("lines %+v", lines)
	}
	if lines[0].metrics["appends/s"] != 7786 || lines[0].metrics[peerMetric] != 52150 {
		t.Fatalf("metrics %v", lines[0].metrics)
	}
	if _, err := parseBenchLines(strings.NewReader("BenchmarkX-2 1 abc ns/op\n")); err == nil {
		t.Fatal("a bad value parsed")
	}

	var w bytes.Buffer
	writeConsumers(&w, time.Now(), []consumerResult{{bench: consumerBenches[2], lines: lines, load: "1 2 3"}})
	got := w.String()
	for _, want := range []string{
		"| compliance-auditor | sqlite | 7786 appends/s | ≥ 10000 | 52150 events/s | 15% | 1 2 3 | **not met** |",
		"| compliance-auditor | postgres | 2331 appends/s | – | 7457 events/s | 31% | 1 2 3 |  |",
		"| compliance-auditor | sqlite | 40.0 | 10.0 | 4.0× | 25000/s | met |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}
