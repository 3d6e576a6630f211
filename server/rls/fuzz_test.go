package rls

import (
	"context"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/store/memory"
)

// FuzzShouldRateLimit: any request on the wire is answered with a status
// per descriptor or a gRPC error of an expected code, never a panic.
func FuzzShouldRateLimit(f *testing.F) {
	for _, req := range []*rlspb.RateLimitRequest{
		{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice")}},
		{Domain: "test", HitsAddend: 5, Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice"), d("blocked=x"), d("tenant=t1"), d("tenant-override=t1")}},
		{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{{Entries: d("user=vip").Entries, HitsAddend: wrapperspb.UInt64(1 << 62)}}},
		{Domain: "", Descriptors: nil},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c, err := config.ParseEnvoy([]byte(rules))
	if err != nil {
		f.Fatal(err)
	}
	m := memory.New(memory.Options{})
	defer m.Close()
	s := New(tollgate.New(m, tollgate.Options{}), c, Options{MaxDescriptors: 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req rlspb.RateLimitRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		resp, err := s.ShouldRateLimit(context.Background(), &req)
		if err != nil {
			switch status.Code(err) {
			case codes.InvalidArgument, codes.Internal: // Internal: a key past the Limiter's MaxKeyLen
				return
			}
			t.Fatalf("error %v", err)
		}
		if len(resp.GetStatuses()) != len(req.GetDescriptors()) {
			t.Fatalf("%d statuses for %d descriptors", len(resp.GetStatuses()), len(req.GetDescriptors()))
		}
		for i, st := range resp.GetStatuses() {
			if st == nil {
				t.Fatalf("no status for descriptor %d", i)
			}
		}
	})
}
