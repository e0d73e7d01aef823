"""Local fakes of the ESP APIs the sync pushes to: Klaviyo (every request checked against Klaviyo's
published OpenAPI document when openapi-core is installed) and Mailchimp (the documented shapes).

The tests drive the sync against them (tests/esp, tests/integration), the bench measures API calls
with them, and `segctl local start-api` starts them as built-in recording destinations when the
destinations file names Klaviyo or Mailchimp and no KLAVIYO_API_URL / MAILCHIMP_API_URL is set.
"""
