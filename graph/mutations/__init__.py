"""Mutation root: one module per mutation, each with its input and payload types."""

import strawberry

from graph.mutations.change_password import change_password
from graph.mutations.create_patient import create_patient
from graph.mutations.create_webhook_endpoint import create_webhook_endpoint
from graph.mutations.delete_webhook_endpoint import delete_webhook_endpoint
from graph.mutations.disable_portal import disable_portal
from graph.mutations.disable_webhook_endpoint import disable_webhook_endpoint
from graph.mutations.enable_portal import enable_portal
from graph.mutations.enable_webhook_endpoint import enable_webhook_endpoint
from graph.mutations.login import login
from graph.mutations.logout import logout
from graph.mutations.redeem_token import redeem_token
from graph.mutations.request_self_reset import request_self_reset
from graph.mutations.request_username_reminder import request_username_reminder
from graph.mutations.rotate_webhook_secret import rotate_webhook_secret
from graph.mutations.send_invitation import send_invitation
from graph.mutations.set_credentials import set_credentials
from graph.mutations.update_patient import update_patient
from graph.mutations.update_practice import update_practice


@strawberry.type
class Mutation:
    create_patient = create_patient
    update_patient = update_patient
    update_practice = update_practice
    enable_portal = enable_portal
    disable_portal = disable_portal
    send_invitation = send_invitation
    set_credentials = set_credentials
    request_self_reset = request_self_reset
    request_username_reminder = request_username_reminder
    redeem_token = redeem_token
    login = login
    change_password = change_password
    logout = logout
    create_webhook_endpoint = create_webhook_endpoint
    disable_webhook_endpoint = disable_webhook_endpoint
    enable_webhook_endpoint = enable_webhook_endpoint
    rotate_webhook_secret = rotate_webhook_secret
    delete_webhook_endpoint = delete_webhook_endpoint
