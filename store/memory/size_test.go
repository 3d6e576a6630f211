package memory

import (
	"testing"
	"unsafe"
)

func TestShardFillsCacheLine(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got != 64 {
		t.Errorf("shard is %d bytes, want 64", got)
	}
}
