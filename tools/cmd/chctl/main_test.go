package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "no arguments prints help", wantOut: "Commands:"},
		{name: "help", args: []string{"help"}, wantOut: "topics"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "unknown flag", args: []string{"topics", "-nope"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errOut)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				var usage usageError
				require.ErrorAs(t, err, &usage)
				return
			}
			require.NoError(t, err)
			require.Contains(t, out.String(), tt.wantOut)
		})
	}
}

// TestTopicsAgainstKafka applies the catalogue to the real broker twice: the
// second run must find every topic as specified.
func TestTopicsAgainstKafka(t *testing.T) {
	brokers := testinfra.KafkaBrokers(t)
	args := []string{"topics", "-brokers", strings.Join(brokers, ",")}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), args, &out, &out), out.String())
	out.Reset()
	require.NoError(t, run(context.Background(), args, &out, &out), out.String())
	specs, err := events.Catalogue(events.DefaultCatalogueConfig())
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out.String(), "ok: "), out.String())
	for _, s := range specs {
		require.Contains(t, out.String(), s.Name)
	}

	// -check reports without creating.
	out.Reset()
	require.NoError(t, run(context.Background(), append(args, "-check"), &out, &out), out.String())
	require.True(t, strings.HasPrefix(out.String(), "ok: "), out.String())
	err = run(context.Background(), append(args, "-check", "-apply"), &out, &out)
	var usage usageError
	require.ErrorAs(t, err, &usage)
}
