package schemas_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/schemas"
)

// LatestVersion answers from its cache after the first call: the same
// version as the schema files say, every time; an unknown topic is refused
// every time.
func TestLatestVersionRepeated(t *testing.T) {
	t.Parallel()
	topics, err := schemas.Topics()
	require.NoError(t, err)
	require.NotEmpty(t, topics)
	for _, topic := range topics {
		vs, err := schemas.Versions(topic)
		require.NoError(t, err)
		want := 0
		for _, v := range vs {
			want = max(want, v.Version)
		}
		for range 2 {
			n, err := schemas.LatestVersion(topic)
			require.NoError(t, err)
			require.Equal(t, want, n, topic)
		}
	}
	for range 2 {
		_, err := schemas.LatestVersion("no-such-topic")
		require.Error(t, err)
	}
}
