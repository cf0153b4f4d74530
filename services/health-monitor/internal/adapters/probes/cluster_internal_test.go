package probes

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

func TestClusterStatusNamesMissingBrokers(t *testing.T) {
	t.Parallel()
	three := map[int32]string{1: "10.0.0.1:9092", 2: "10.0.0.2:9092", 3: "10.0.0.3:9092"}
	serving := func(ids ...int32) map[int32]string {
		m := map[int32]string{}
		for _, id := range ids {
			m[id] = three[id]
		}
		return m
	}
	tests := []struct {
		name       string
		view       clusterView
		wantStatus domain.Status
		wantDetail string
	}{
		{name: "all serving", view: clusterView{serving: serving(1, 2, 3), controller: 1}, wantStatus: domain.StatusHealthy,
			wantDetail: "3 of 3 brokers serving, controller 1"},
		{name: "one of three lost: degraded and named", view: clusterView{serving: serving(1, 3), controller: 1, urp: 12}, wantStatus: domain.StatusDegraded,
			wantDetail: "broker 2 (10.0.0.2:9092) not serving; 2 of 3 brokers serving"},
		{name: "two of three lost: no majority", view: clusterView{serving: serving(3), controller: 3}, wantStatus: domain.StatusUnhealthy,
			wantDetail: "broker 1 (10.0.0.1:9092), broker 2 (10.0.0.2:9092) not serving"},
		{name: "no controller", view: clusterView{serving: serving(1, 2, 3), controller: -1}, wantStatus: domain.StatusUnhealthy},
		{name: "offline partitions", view: clusterView{serving: serving(1, 2, 3), controller: 2, offline: 1}, wantStatus: domain.StatusUnhealthy},
		{name: "under-replicated only", view: clusterView{serving: serving(1, 2, 3), controller: 2, urp: 1}, wantStatus: domain.StatusDegraded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := clusterStatus(three, tt.view)
			require.Equal(t, tt.wantStatus, c.Status, c.Detail)
			require.Contains(t, c.Detail, tt.wantDetail)
			require.Equal(t, float64(3-len(tt.view.serving)), c.Metrics["brokers_down"])
		})
	}
}

func TestPartitionHealthFromOneMetadataAnswer(t *testing.T) {
	t.Parallel()
	md := &sarama.MetadataResponse{Topics: []*sarama.TopicMetadata{
		{Name: "job-lifecycle", Partitions: []*sarama.PartitionMetadata{
			{ID: 0, Leader: 1, Replicas: []int32{1, 2, 3}, Isr: []int32{1, 2, 3}},
			{ID: 1, Leader: 2, Replicas: []int32{1, 2, 3}, Isr: []int32{2, 3}},
			{ID: 2, Leader: -1, Replicas: []int32{1, 2, 3}, Isr: []int32{}, Err: sarama.ErrLeaderNotAvailable},
		}},
		{Name: "deleted", Err: sarama.ErrUnknownTopicOrPartition, Partitions: []*sarama.PartitionMetadata{
			{ID: 0, Leader: -1},
		}},
	}}
	urp, offline := partitionHealth(md)
	require.Equal(t, 1, urp, "partition 1 lacks an in-sync replica")
	require.Equal(t, 1, offline, "partition 2 has no leader; a deleted topic counts for nothing")
}
