package serde

// A SubjectStrategy names the registry subject under which a schema is
// registered and looked up, from the topic, whether the schema is for
// record keys, and the full name of the schema's record ("" for a schema
// that is not a named type). It returns "" when it cannot name a subject.
type SubjectStrategy func(topic string, key bool, record string) string

// TopicName names subjects "<topic>-value" and "<topic>-key": one schema
// per topic (Confluent: TopicNameStrategy, the default).
func TopicName(topic string, key bool, _ string) string {
	if key {
		return topic + "-key"
	}
	return topic + "-value"
}

// RecordName names subjects by the record's full name, so one record type
// evolves under one subject across topics (Confluent: RecordNameStrategy).
func RecordName(_ string, _ bool, record string) string { return record }

// TopicRecordName names subjects "<topic>-<record>", allowing several record
// types per topic (Confluent: TopicRecordNameStrategy).
func TopicRecordName(topic string, _ bool, record string) string {
	if record == "" {
		return ""
	}
	return topic + "-" + record
}
