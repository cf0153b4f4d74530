package domain

// Row is one job as queries see it.
type Row struct {
	JobID, UserID, System, Agent, Allocation string
	CreatedAtUS                              int64
	Facts
}

// Filter selects jobs created in [FromUS, ToUS); empty strings and zero
// bounds match everything.
type Filter struct {
	FromUS, ToUS                 int64
	JobID, UserID, System, Agent string
}
