/**
 * The REST wire shapes the client reads, as JSDoc types (see the server's API contract).
 * This module has no runtime content; import the types with `import('./types.js').Name`.
 */

/**
 * One instant, in UTC, in the board's zone and in the viewer's zone.
 * @typedef {object} TimeTriple
 * @property {string} utc
 * @property {string} board
 * @property {string} board_tz
 * @property {string} viewer
 * @property {string} viewer_tz
 */

/**
 * @typedef {object} Institution
 * @property {number} id
 * @property {string} name
 * @property {string} code
 * @property {string} timezone
 */

/**
 * @typedef {'admin'|'coordinator'|'chair'|'specialist'|'observer'|'records'} Role
 */

/**
 * @typedef {object} User
 * @property {number} id
 * @property {string} username
 * @property {string} display_name
 * @property {Role} role
 * @property {string|null} specialty
 * @property {Institution} institution
 * @property {string} timezone
 * @property {string} locale
 */

/**
 * @typedef {object} Session
 * @property {number} id
 * @property {number} board_id
 * @property {string} board_name
 * @property {TimeTriple} start
 * @property {TimeTriple} end
 * @property {'scheduled'|'cancelled'} status
 * @property {number} agenda_count
 */

/**
 * @typedef {object} BoardMember
 * @property {number} user_id
 * @property {string} username
 * @property {string} display_name
 * @property {string} role
 * @property {string|null} specialty
 * @property {number} institution_id
 */

/**
 * @typedef {object} Board
 * @property {number} id
 * @property {string} name
 * @property {string} tumor_site
 * @property {number} home_institution_id
 * @property {string} timezone
 * @property {string} rrule
 * @property {string} start_time
 * @property {string} start_date
 * @property {number} duration_minutes
 * @property {string[]} required_specialties
 * @property {number} readiness_max_age_days
 * @property {BoardMember[]} members
 * @property {Session|null} next_session
 */

/**
 * @typedef {'discussion'|'standard_of_care'} Lane
 */

/**
 * @typedef {object} AgendaItem
 * @property {number} id
 * @property {number} session_id
 * @property {number} case_id
 * @property {string} case_number
 * @property {string} clinical_question
 * @property {number} position
 * @property {number} timebox_minutes
 * @property {Lane} lane
 * @property {TimeTriple | null} planned_start null for standard-of-care items, which are listed
 *   but take no time on the session's clock
 */

/**
 * @typedef {object} Agenda
 * @property {AgendaItem[]} items
 * @property {number} total_minutes the time-boxes of the items that are discussed
 * @property {number} [session_minutes] the session's length
 */

/**
 * @typedef {object} CaseSummary
 * @property {number} id
 * @property {string} number
 * @property {string} state
 * @property {number} board_id
 * @property {string} clinical_question
 * @property {string|null} patient_name
 * @property {boolean} ready
 */

/**
 * The patient as the viewer may see them: identified, or only sex and age for external users.
 * @typedef {object} Patient
 * @property {string} [name]
 * @property {string} [mrn]
 * @property {string} [birth_date]
 * @property {string} [sex]
 * @property {number} [age]
 */

/**
 * @typedef {object} Attachment
 * @property {number} id
 * @property {string} filename
 * @property {string} content_type
 * @property {number} size
 * @property {string} uploaded_at
 */

/**
 * @typedef {object} Study
 * @property {number} id
 * @property {string} study_instance_uid
 * @property {string} description
 * @property {string} modality
 * @property {string} study_date
 */

/**
 * @typedef {object} ReadinessItem
 * @property {string} key
 * @property {boolean} ok
 * @property {string} detail
 */

/**
 * @typedef {object} Case
 * @property {number} id
 * @property {string} number
 * @property {number} board_id
 * @property {number} home_institution_id
 * @property {string} state
 * @property {Patient} patient
 * @property {boolean} deidentified
 * @property {string} clinical_question
 * @property {string} clinical_summary
 * @property {string} summary_language
 * @property {string|null} summary_translation
 * @property {string|null} translation_language
 * @property {string|null} translator
 * @property {boolean|null} consent_external
 * @property {string|null} consent_date
 * @property {string|null} rejection_reason
 * @property {Attachment[]} attachments
 * @property {Study[]} studies
 * @property {{ready: boolean, items: ReadinessItem[]}} readiness
 * @property {string[]} allowed_transitions
 * @property {string} created_at
 * @property {string} updated_at
 */

/**
 * @typedef {object} Opinion
 * @property {number} user_id
 * @property {string} display_name
 * @property {string|null} specialty
 * @property {string} text
 * @property {string} updated_at
 */

/**
 * @template T
 * @typedef {{items: T[]}} ItemList
 */

/**
 * Someone who attended a case's discussion, from their media joins.
 * @typedef {object} Attendee
 * @property {number} [user_id] (left out of a signed plan)
 * @property {string} name
 * @property {string|null} specialty
 * @property {string} institution
 * @property {string} joined_at ISO instant
 * @property {string|null} left_at
 */

/**
 * Which of the board's required specialties attended.
 * @typedef {object} Quorum
 * @property {string[]} required
 * @property {string[]} present
 * @property {string[]} missing
 */

/**
 * A case's consensus note as the REST API gives it (GET /api/cases/{id}/note).
 * @typedef {object} NoteInfo
 * @property {number} case_id
 * @property {string} template
 * @property {'draft'|'amending'|'finalized'} status
 * @property {boolean} readonly
 * @property {boolean} can_edit
 * @property {boolean} can_finalize
 * @property {boolean} can_amend
 * @property {Record<string, unknown>} content
 * @property {Attendee[]} attendance
 * @property {Quorum} quorum
 * @property {{id: number, start_at: string, end_at: string}|null} session
 * @property {string|null} amendment_reason
 */

/**
 * One signed version of an agreed plan.
 * @typedef {object} PlanVersion
 * @property {number} version
 * @property {string} hash
 * @property {string|null} previous_hash
 * @property {string|null} amendment_reason
 * @property {string} finalized_at
 * @property {unknown} finalized_by a name, or an object with one
 * @property {string} kid the key that signed it
 */

/**
 * What a version signs (the payload of the signed export).
 * @typedef {object} PlanPayload
 * @property {string} format
 * @property {unknown} case
 * @property {number} version
 * @property {{version: number, hash: string}|null} previous the version before (amendments)
 * @property {string|null} amendment_reason
 * @property {string} template
 * @property {Record<string, unknown>} note
 * @property {unknown} session
 * @property {Attendee[]} attendance
 * @property {Quorum} quorum
 * @property {unknown} finalized_by
 * @property {string} finalized_at
 */

/**
 * @typedef {'planned'|'done'|'not_done'} FollowupStatus
 */

/**
 * The follow-up of one recommendation of the agreed plan.
 * @typedef {object} Followup
 * @property {number} rank
 * @property {string} type
 * @property {FollowupStatus} status
 * @property {string|null} reason
 * @property {string|null} comment
 * @property {string|null} updated_at
 */

/**
 * A case's agreed plan (GET /api/cases/{id}/plan).
 * @typedef {object} Plan
 * @property {PlanVersion[]} versions
 * @property {PlanPayload} current
 * @property {Followup[]} followup
 * @property {boolean} verified the server's own check of signatures and hash chain
 * @property {string[]} problems what that check found
 */

/**
 * The signed export of an agreed plan (GET /api/cases/{id}/plan/signed).
 * @typedef {object} SignedPlan
 * @property {string} format
 * @property {unknown} case
 * @property {JsonWebKey[]} keys
 * @property {{payload: PlanPayload, hash: string, signature: {alg: string, kid: string, value: string}}[]} versions
 */


/**
 * One agreed plan the records search found (GET /api/records).
 * @typedef {object} RecordItem
 * @property {number} case_id
 * @property {string} case_number
 * @property {number} board_id
 * @property {string} board_name
 * @property {string} tumor_site
 * @property {string} state the case's state
 * @property {'finalized'|'amending'|null} note_status
 * @property {number} version the latest signed version
 * @property {string} finalized_at ISO instant (UTC) it was signed
 * @property {string} finalized_by a name
 * @property {string|null} session_start_at ISO instant of the session that discussed it
 * @property {number} recommendations
 */

/**
 * One page of records search results, and how many there are in all.
 * @typedef {{items: RecordItem[], total: number}} RecordPage
 */

/**
 * @typedef {'pdf'|'fhir'|'hl7'|'json'} ExportFormat
 */

/**
 * A bulk export (POST /api/exports, GET /api/exports/{id}).
 * @typedef {object} ExportJob
 * @property {string} id
 * @property {'running'|'done'|'failed'} state
 * @property {number} done plans exported so far
 * @property {number} total plans to export
 * @property {{case: string, error: string}[]} failed the plans that could not be exported, and why
 * @property {string|null} error why the whole job failed
 * @property {ExportFormat} format
 * @property {string} from
 * @property {string} to
 */

/**
 * One board's figures over a date range (GET /api/records/metrics).
 * @typedef {object} BoardMetrics
 * @property {number} board_id
 * @property {string} board_name
 * @property {number} sessions
 * @property {number} cases
 * @property {number|null} cases_per_session
 * @property {number|null} minutes_per_case
 * @property {{met: number, total: number, share: number|null}} quorum
 * @property {{total: number, implemented: number, not_done: number, planned: number,
 *   share_implemented: number|null, share_not_done: number|null,
 *   not_done_by_reason: Record<string, number>}} recommendations
 * @property {{median: number|null, n: number}} request_to_final_days
 */

/**
 * @typedef {{from: string|null, to: string|null, boards: BoardMetrics[]}} Metrics
 */

export {};
