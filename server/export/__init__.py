"""Export of agreed plans into the formats hospital records read: PDF, FHIR R4, HL7 v2, JSON."""
