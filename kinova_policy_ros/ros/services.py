"""
Services of the policy node: ``~/enable`` (``std_srvs/SetBool``) and ``~/reset`` (``Trigger``).

The handlers only flip the enable switch and request a reset; the control thread acts on both
at its next step.
"""

from collections.abc import Callable

from rclpy.node import Node
from std_srvs.srv import SetBool, Trigger

__all__ = ['ENABLE_SERVICE', 'RESET_SERVICE', 'ServiceHandlers']

ENABLE_SERVICE = '~/enable'
RESET_SERVICE = '~/reset'


class ServiceHandlers:
    """
    The ``~/enable`` and ``~/reset`` handlers.

    :param set_enabled: switches commands on or off, returns the previous setting.
    :param request_reset: asks for an observation-buffer reset at the next control step.
    :param reset_on_enable: reset when commands are switched on (a ``data.anchor_frame`` model:
        the anchor frame must show the scene the commands act on, not the one at start-up).
    :param log: logs an info line (a change of the switch).
    """

    def __init__(
        self,
        set_enabled: Callable[[bool], bool],
        request_reset: Callable[[], None],
        reset_on_enable: bool,
        log: Callable[[str], object],
    ) -> None:
        self._set_enabled = set_enabled
        self._request_reset = request_reset
        self.reset_on_enable = reset_on_enable
        self._log = log

    def create(self, node: Node) -> None:
        """Create both services on ``node``."""
        node.create_service(SetBool, ENABLE_SERVICE, self.on_enable)
        node.create_service(Trigger, RESET_SERVICE, self.on_reset)

    def on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """Switch commands on (``data: true``) or off."""
        enable = bool(request.data)
        was = self._set_enabled(enable)
        if self.reset_on_enable and enable and not was:
            self._request_reset()
        response.success = True
        response.message = 'enabled' if enable else 'disabled'
        if was != enable:
            self._log(f'commands {response.message} by ~/enable')
        return response

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Reset the observation buffer at the next control step."""
        self._request_reset()
        response.success = True
        response.message = 'observation buffer will be reset at the next control step'
        return response
