package kafkabus

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

// The expected values were printed by Kafka 4.4's own
// org.apache.kafka.common.utils.Utils.murmur2 and toPositive(h) % 10.
func TestPartitionerMatchesJavaClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key       string
		murmur2   int32
		partition int32 // of 10
	}{
		{key: "21", murmur2: -973932308, partition: 0},
		{key: "foobar", murmur2: -790332482, partition: 6},
		{key: "a-little-bit-long-string", murmur2: -985981536, partition: 2},
		{key: "a-little-bit-longer-string", murmur2: -1486304829, partition: 9},
		{key: "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", murmur2: -58897971, partition: 7},
		{key: "abc", murmur2: 479470107, partition: 7},
		{key: "", murmur2: 275646681, partition: 1},
		{key: "0195f2a0-7c1e-7b3a-9c4d-1a2b3c4d5e6f", murmur2: 311780251, partition: 1},
	}
	p := newPartitioner("job-lifecycle")
	require.True(t, p.RequiresConsistency())
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			h := newMurmur2()
			_, _ = h.Write([]byte(tt.key))
			require.Equal(t, tt.murmur2, int32(h.Sum32()))
			got, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(tt.key)}, 10)
			require.NoError(t, err)
			require.Equal(t, tt.partition, got)
			if tt.key != "" {
				require.Equal(t, tt.partition, PartitionFor(tt.key, 10))
			}
		})
	}
}
