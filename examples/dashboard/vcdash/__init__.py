"""vitalcore dashboard example: live ward and central monitoring in the browser."""
