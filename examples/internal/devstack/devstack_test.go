package devstack

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
)

func TestStackServesAllThree(t *testing.T) {
	s, err := Start(Config{KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0", MongoAddr: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Check(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res := cl.ProduceSync(ctx, &kgo.Record{Topic: telemetry.Topic, Key: []byte("s"), Value: []byte("v")})
	if err := res.FirstErr(); err != nil {
		t.Fatalf("producing to the seeded topic: %v", err)
	}

	mc, err := mongo.Connect(options.Client().ApplyURI(s.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	coll := mc.Database("test").Collection("usage")
	docs := []any{
		bson.D{{Key: "_id", Value: "a"}, {Key: "sensor_id", Value: "s1"}, {Key: "hours", Value: 1.5}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "sensor_id", Value: "s1"}, {Key: "hours", Value: 2.25}},
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, docs[0]); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("inserting an _id twice: %v, want a duplicate key error", err)
	}
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$sensor_id"}, {Key: "h", Value: bson.D{{Key: "$sum", Value: "$hours"}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var out []struct {
		ID string  `bson:"_id"`
		H  float64 `bson:"h"`
	}
	if err := cur.All(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].ID != "s1" || out[0].H != 3.75 {
		t.Fatalf("$group gave %+v, want s1: 3.75", out)
	}
}

func TestStackSkipsWhatIsNotConfigured(t *testing.T) {
	s, err := Start(Config{RegistryAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Brokers != "" || s.MongoURI != "" || s.RegistryURL == "" {
		t.Fatalf("got %+v, want only a registry", s)
	}
}

func TestStackRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{KafkaAddr: "10.0.0.1:9092"},
		{KafkaAddr: "nope"},
		{MongoAddr: "127.0.0.1:0"}, // no data directory
	} {
		if s, err := Start(cfg); err == nil {
			s.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}
